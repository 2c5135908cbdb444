/**
 * Added latency between the bed's hosts without netem (this kernel has no `sch_netem`): a TCP
 * proxy run inside one host's namespace, which nftables' `redirect` (test/hosts/netns-bed.ts,
 * `routeThroughProxy`) makes every connection from this host to another host's Redis or cluster
 * bus port go through:
 *
 *   ip netns exec <host ns> node --import tsx test/hosts/delay-proxy-main.ts <config.json>
 *
 * Each route listens on a local port and connects on to its real destination from the host's
 * second address (which the redirect rules leave alone). Every chunk read from either side is
 * written on to the other `delay` ms after it arrived, in order, so each direction of a connection
 * between two hosts is `delay` ms late — one-way latency, as `netem delay` on each host's link
 * (round trip + 2 × delay). Packet loss is not the proxy's: nftables drops packets on the wire
 * between the hosts and TCP retransmits them, proxied or not.
 *
 * On stdin: `delay <ms>` sets the delay for bytes read from then on (0: passed on at once), and
 * is answered `{"delay":<ms>}`. Prints `{"ready":true}` once every route listens.
 *
 * A partition stays a partition: a connection to a cut-off host is accepted locally, but nothing
 * passes, and if the host cannot be reached within `connectTimeoutMs` the local side is reset (a
 * client's connect attempt to an unreachable host would have timed out instead).
 */
import { type Socket, connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';

interface ProxyConfig {
  routes: { listenPort: number; host: string; port: number }[];
  /** The local address outgoing connections are made from (not redirected). */
  sourceAddress: string;
  connectTimeoutMs: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ProxyConfig;
let delayMs = 0;
/** Bytes queued in one direction above which the reading side is paused. */
const HIGH_WATER = 8 * 1024 * 1024;

/** Pass `from`'s bytes to `to`, each `delayMs` late, in order; end `to` once `from` ended and all is written. */
function pass(from: Socket, to: Socket): void {
  const queue: { at: number; buf: Buffer }[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | null = null;
  let ended = false;
  const flush = () => {
    timer = null;
    const now = Date.now();
    while (queue.length > 0 && queue[0]!.at <= now) {
      const { buf } = queue.shift()!;
      queued -= buf.length;
      if (!to.destroyed) to.write(buf);
    }
    if (queued < HIGH_WATER && from.isPaused()) from.resume();
    if (queue.length > 0) timer = setTimeout(flush, queue[0]!.at - now);
    else if (ended && !to.destroyed) to.end();
  };
  from.on('data', (buf: Buffer) => {
    if (delayMs === 0 && queue.length === 0) {
      if (!to.destroyed) to.write(buf);
      return;
    }
    queue.push({ at: Date.now() + delayMs, buf });
    queued += buf.length;
    if (queued >= HIGH_WATER) from.pause();
    if (timer === null) timer = setTimeout(flush, delayMs);
  });
  from.on('end', () => {
    ended = true;
    if (queue.length === 0 && !to.destroyed) to.end();
  });
  from.on('close', () => {
    // Closed without an end (reset, error): drop what is queued and close the other side too.
    if (ended) return;
    if (timer !== null) clearTimeout(timer);
    to.destroy();
  });
}

let listening = 0;
for (const route of config.routes) {
  const server = createServer({ pauseOnConnect: true }, (local) => {
    local.setNoDelay(true);
    local.on('error', () => local.destroy());
    const remote = connect({ host: route.host, port: route.port, localAddress: config.sourceAddress });
    remote.setNoDelay(true);
    remote.on('error', () => remote.destroy());
    let connected = false;
    const connectTimer = setTimeout(() => remote.destroy(), config.connectTimeoutMs);
    remote.once('connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      pass(local, remote);
      pass(remote, local);
      local.resume();
    });
    remote.once('close', () => {
      clearTimeout(connectTimer);
      // Never reached (refused, unreachable, timed out): reset the local side as a failed connect.
      if (!connected && !local.destroyed) local.resetAndDestroy();
    });
  });
  server.listen(route.listenPort, '127.0.0.1', () => {
    if (++listening === config.routes.length) process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  });
}

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(' ');
  if (cmd === 'delay') {
    delayMs = Math.max(0, Number(arg) || 0);
    process.stdout.write(`${JSON.stringify({ delay: delayMs })}\n`);
  }
}
