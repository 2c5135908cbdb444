/**
 * A real bridge against Axon (issue 22.4): Heisenbridge 1.15.4 (PyPI) bridging to a real IRC
 * server, ngIRCd 26.1 (Debian's package), both on loopback (scripts/lib/ensure.sh installs them
 * into $AXON_PEERS_DIR). The journey: Heisenbridge starts with its own registration file and opens
 * a control room for its owner; the owner adds a network and joins an IRC channel through the
 * bot's rooms; a message typed by a plain IRC client (a socket here) appears in Matrix from the
 * `@irc_…` puppet; a Matrix message of the owner appears on IRC.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientsFor, enc, txn, type Clients, type Json, type Session } from '../e2e/clients';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { freePort } from '../setup/free-port';

const peers = process.env.AXON_PEERS_DIR ?? join(import.meta.dirname, '../../.peers');
const python = join(peers, 'heisenbridge-venv/bin/python');
const ngircd = join(peers, 'ngircd/usr/sbin/ngircd');
const have = existsSync(python) && existsSync(ngircd);
if (!have && process.env.CI) throw new Error(`Heisenbridge or ngIRCd missing under ${peers} (scripts/lib/ensure.sh installs them)`);

describe.skipIf(!have)('Heisenbridge 1.15.4 + ngIRCd 26.1 against Axon', () => {
  let server: TestServer;
  let c: Clients;
  let owner: Session;
  let irc: ChildProcess;
  let bridge: ChildProcess;
  let ircPort: number;
  let bridgeLog = '';
  let since: string | undefined;
  const rooms = new Map<string, Json[]>();
  const invites = new Set<string>();

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'axon-heisenbridge-'));
    ircPort = await freePort();
    const conf = readFileSync(join(import.meta.dirname, 'ngircd-loopback.conf'), 'utf8').replace('Ports = 38667', `Ports = ${ircPort}`);
    writeFileSync(join(dir, 'ngircd.conf'), conf);
    irc = spawn(ngircd, ['-n', '-f', join(dir, 'ngircd.conf')], { env: { ...process.env, LD_LIBRARY_PATH: join(peers, 'ngircd/usr/lib/x86_64-linux-gnu') }, stdio: 'ignore' });
    const bridgePort = await freePort();
    const reg = join(dir, 'heisenbridge.yaml');
    const gen = spawnSync(python, ['-m', 'heisenbridge', '-c', reg, '--generate', '-l', '127.0.0.1', '-p', String(bridgePort)], { encoding: 'utf8' });
    expect(gen.status, gen.stderr).toBe(0);
    server = await startTestServer({ configure: (cfg) => { cfg.appservices = { ...cfg.appservices, configFiles: [reg] }; } });
    c = await clientsFor(server);
    owner = await c.mint('owner');
    bridge = spawn(python, ['-m', 'heisenbridge', '-c', reg, '-l', '127.0.0.1', '-p', String(bridgePort), '-v', '-o', owner.userId, server.baseUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
    bridge.stdout?.on('data', (d) => (bridgeLog += d));
    bridge.stderr?.on('data', (d) => (bridgeLog += d));
  }, 120_000);

  afterAll(async () => {
    bridge?.kill();
    irc?.kill();
    await c?.close();
    await server?.stop();
  });

  async function sync(): Promise<void> {
    const r = await c.call(owner, 'GET', `/sync?timeout=1000${since ? `&since=${enc(since)}` : ''}`);
    expect(r.status).toBe(200);
    since = r.body.next_batch;
    for (const id of Object.keys(r.body.rooms?.invite ?? {})) invites.add(id);
    for (const [id, room] of Object.entries(r.body.rooms?.join ?? {}) as [string, Json][]) {
      if (!rooms.has(id)) rooms.set(id, []);
      rooms.get(id)!.push(...(room.timeline?.events ?? []));
    }
  }

  async function waitFor<T>(what: string, fn: () => T | undefined, ms = 90_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = fn();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${JSON.stringify([...rooms].map(([id, evs]) => [id, evs.map((e) => [e.sender, e.type, e.content?.body ?? e.content?.membership])]))}\n--- heisenbridge ---\n${bridgeLog.slice(-3000)}`);
      await sync();
    }
  }

  /** Join the next room the bot invites the owner to. */
  async function joinNextInvite(seen: Set<string>): Promise<string> {
    const roomId = await waitFor('an invite from the bridge', () => [...invites].find((r) => !seen.has(r)));
    const j = await c.call(owner, 'POST', `/join/${enc(roomId)}`, {});
    expect(j.status, JSON.stringify(j.body)).toBe(200);
    seen.add(roomId);
    return roomId;
  }

  async function say(roomId: string, body: string): Promise<void> {
    const r = await c.call(owner, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  }

  /** A message of the bot after the owner's last message in the room (its answer to a command). */
  const botSaid = (roomId: string, re: RegExp = /./) => () => {
    const evs = rooms.get(roomId) ?? [];
    let mine = -1;
    evs.forEach((e, i) => {
      if (e.sender === owner.userId && e.type === 'm.room.message') mine = i;
    });
    return evs.slice(mine + 1).find((e) => e.type === 'm.room.message' && e.sender !== owner.userId && re.test(e.content?.body ?? ''));
  };

  it('bridges messages both ways between Matrix and a real IRC channel', async () => {
    const seen = new Set<string>();
    const control = await joinNextInvite(seen);
    await say(control, 'ADDNETWORK axontest');
    await waitFor('ADDNETWORK answered', botSaid(control));
    await say(control, `ADDSERVER axontest 127.0.0.1 ${ircPort}`);
    await waitFor('ADDSERVER answered', botSaid(control));
    await say(control, 'OPEN axontest');
    const network = await joinNextInvite(seen);
    await say(network, 'NICK mxowner');
    await say(network, 'CONNECT');
    await waitFor('the bridge connected to IRC', botSaid(network, /(Connected|Welcome|registered)/i), 120_000);
    await say(network, 'JOIN #axon');
    const channel = await joinNextInvite(seen);

    // A plain IRC client in the same channel.
    const sock: Socket = connect(ircPort, '127.0.0.1');
    let ircIn = '';
    sock.on('data', (d) => {
      ircIn += d.toString('utf8');
      for (const line of ircIn.split('\r\n')) if (line.startsWith('PING')) sock.write(`PONG ${line.slice(5)}\r\n`);
    });
    sock.write('NICK plainirc\r\nUSER plainirc 0 * :Plain IRC\r\n');
    const until = async (what: string, ok: () => boolean) => {
      const end = Date.now() + 90_000;
      while (!ok()) {
        if (Date.now() > end) throw new Error(`IRC: timed out waiting for ${what}\n${ircIn.slice(-2000)}\n--- heisenbridge ---\n${bridgeLog.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await until('welcome', () => / 001 /.test(ircIn));
    sock.write('JOIN #axon\r\n');
    await until('joined', () => / 366 /.test(ircIn));
    sock.write('PRIVMSG #axon :hello from a plain IRC client\r\n');
    const fromIrc = await waitFor('the IRC message in Matrix', () => rooms.get(channel)?.find((e) => e.content?.body === 'hello from a plain IRC client'));
    expect(fromIrc.sender).toMatch(/^@irc_.*plainirc.*:localhost$/);
    await say(channel, 'hello from Matrix');
    await until('the Matrix message on IRC', () => /PRIVMSG #axon :hello from Matrix/.test(ircIn));
    expect(ircIn).toMatch(/:mxowner!\S+ PRIVMSG #axon :hello from Matrix/);
    sock.end();
  }, 400_000);
});
