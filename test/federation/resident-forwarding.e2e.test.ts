/**
 * The resident server passes on what only it hears of (issue 14.6/14.7): a remote user's join or
 * leave comes to us alone through send_join / send_leave (send_knock too), so our federation
 * sender sends the accepted event to the room's other servers on that server's behalf — as
 * Synapse does — and never back to it. Events that came in a transaction (/send) are their
 * origin's to send and are never re-sent.
 *
 * 1. Two signing test peers P and Q (scripts/lib/signing-peer.ts, which record every transaction
 *    Axon sends them) join an Axon room one after the other: P gets Q's join from Axon, Q gets
 *    nothing of its own back; Q's message sent to Axon in a transaction does not reach P; Q's
 *    leave through send_leave reaches P.
 * 2. Three real servers: Axon A hosts the room; a user on a second Axon (B) and a user on Synapse
 *    both join through A; each sees the other's join, and messages flow between B and Synapse
 *    both ways (once either knows the other is in the room it sends to it directly).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { computeEventId } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { clientsFor, enc, eventually, txn, type Json } from '../e2e/clients';
import { createTestCa } from '../peers/test-ca';
import { loopbackServerName, startSynapse, SYNAPSE_VERSION, synapseInstallation, type SynapsePeer } from '../peers/synapse';
import { startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const VERSION = requireRoomVersion('10');
const install = synapseInstallation();
const skipSynapse = !install.ok && !process.env.CI;
if (skipSynapse && !install.ok) console.warn(`resident-forwarding.e2e: the Synapse journey is skipped. ${install.reason}`);

const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
}, 120_000);

describe('the resident server sends on behalf of a server that joined or left through it', () => {
  it('P gets Q’s join and leave from us; Q gets nothing of its own back; what Q sends in a transaction is not re-sent to P', async () => {
    const ca = createTestCa();
    cleanups.push(() => ca.cleanup());
    const a = await startFederatedAxon('127.0.0.155', ca);
    cleanups.push(() => a.stop());
    const [p, q] = await Promise.all([SigningPeer.start('127.0.0.156', ca), SigningPeer.start('127.0.0.157', ca)]);
    cleanups.push(() => p.close(), () => q.close());
    const atP: JsonObject[] = [];
    const atQ: JsonObject[] = [];
    p.onTransaction = (t) => atP.push(...t.pdus);
    q.onTransaction = (t) => atQ.push(...t.pdus);
    const clients = await clientsFor(a);
    cleanups.push(() => clients.close());
    const alice = await clients.mint('alice');
    const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10', name: 'forwarding' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;

    const membership = async (peer: SigningPeer, kind: 'join' | 'leave', userId: string) => {
      const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_${kind}/${enc(roomId)}/${enc(userId)}${kind === 'join' ? '?ver=10' : ''}`);
      expect(made.status, made.text).toBe(200);
      const { pdu, id } = peer.sign(made.body.event as JsonObject, VERSION);
      const sent = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_${kind}/${enc(roomId)}/${enc(id)}`, pdu);
      expect(sent.status, sent.text).toBe(200);
      return { id, pdu, answer: sent.body };
    };
    const pat = `@pat:${p.serverName}`;
    const quin = `@quin:${q.serverName}`;
    const sendersAt = (list: JsonObject[]) => list.map((e) => `${e.type}/${e.sender}/${(e.content as Json)?.membership ?? (e.content as Json)?.body ?? ''}`);

    await membership(p, 'join', pat);
    const qJoin = await membership(q, 'join', quin);
    // P hears of Q's join from us (P's only way to know: Q talked to us alone).
    await eventually(async () => atP, (l) => l.some((e) => e.sender === quin), 30_000);
    expect(atP.filter((e) => e.sender === quin).map((e) => computeEventId(e, VERSION))).toEqual([qJoin.id]);

    // Q sends a message to us in a transaction, on its join; then Alice sends one. Each
    // destination's events go in order, so once P has Alice's message, Q's would have come first.
    const stateIds = new Map<string, string>();
    for (const e of qJoin.answer.state as JsonObject[]) stateIds.set(`${e.type}|${e.state_key}`, computeEventId(e, VERSION));
    const { pdu: qMessage, id: qMessageId } = q.sign(
      {
        room_id: roomId,
        sender: quin,
        type: 'm.room.message',
        content: { msgtype: 'm.text', body: 'from Q in a transaction' },
        origin_server_ts: Date.now(),
        depth: ((qJoin.pdu.depth as number) ?? 0) + 1,
        prev_events: [qJoin.id],
        auth_events: [stateIds.get('m.room.create|')!, stateIds.get('m.room.power_levels|')!, qJoin.id],
      },
      VERSION,
    );
    const txnAnswer = await q.sendTransaction(a, `q-${txn()}`, [qMessage]);
    expect(txnAnswer.status, txnAnswer.text).toBe(200);
    expect(txnAnswer.body.pdus[qMessageId]).toEqual({});
    const after = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'from alice after Q' });
    expect(after.status).toBe(200);
    await eventually(async () => atP, (l) => l.some((e) => (e.content as Json)?.body === 'from alice after Q'), 30_000);
    expect(sendersAt(atP).filter((x) => x.includes(quin))).toEqual([`m.room.member/${quin}/join`]);
    // Q got Alice's message (it is in the room), never its own events back.
    await eventually(async () => atQ, (l) => l.some((e) => (e.content as Json)?.body === 'from alice after Q'), 30_000);
    expect(atQ.filter((e) => e.sender === quin)).toEqual([]);

    // Q's user leaves through us: P hears of it from us; Q does not get it back.
    const qLeave = await membership(q, 'leave', quin);
    await eventually(async () => atP, (l) => l.some((e) => e.sender === quin && (e.content as Json)?.membership === 'leave'), 30_000);
    expect(atP.filter((e) => e.sender === quin).map((e) => computeEventId(e, VERSION))).toEqual([qJoin.id, qLeave.id]);
    const bye = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'bye' });
    expect(bye.status).toBe(200);
    await eventually(async () => atP, (l) => l.some((e) => (e.content as Json)?.body === 'bye'), 30_000);
    expect(atQ.filter((e) => e.sender === quin)).toEqual([]);
  }, 180_000);
});

describe.skipIf(skipSynapse)(`three servers: Axon A hosts, a second Axon and Synapse ${SYNAPSE_VERSION} join through it`, () => {
  let s: SynapsePeer | undefined;
  afterEach(({ task }) => {
    if (task.result?.state === 'fail' && s) console.error(`${s.serverName} logs:\n${s.logTail(60)}`);
  });

  it("B's user and the Synapse user see each other's joins, and their messages flow both ways", async () => {
    const ca = createTestCa();
    cleanups.push(() => ca.cleanup());
    const [a, b, synapse] = await Promise.all([
      startFederatedAxon('127.0.0.158', ca),
      startFederatedAxon('127.0.0.159', ca),
      loopbackServerName('127.0.0.160').then((serverName) => startSynapse({ serverName, ca })),
    ]);
    s = synapse;
    cleanups.push(() => a.stop(), () => b.stop(), () => synapse.stop());
    const [ca_, cb] = await Promise.all([clientsFor(a), clientsFor(b)]);
    cleanups.push(() => ca_.close(), () => cb.close());
    const alice = await ca_.mint('alice');
    const carol = await cb.mint('carol');
    const bob = await synapse.registerUser('bob', 'bob password');
    const created = await ca_.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10', name: 'three servers' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;

    // B's user joins through A, then the Synapse user through A.
    const bJoin = await cb.call(carol, 'POST', `/join/${enc(roomId)}?server_name=${enc(a.serverName)}`, {});
    expect(bJoin.status, JSON.stringify(bJoin.body)).toBe(200);
    const sJoin = await synapse.call(bob, 'POST', `/join/${enc(roomId)}?server_name=${enc(a.serverName)}`, {});
    expect(sJoin.status, JSON.stringify(sJoin.body)).toBe(200);

    const everyone = [alice.userId, bob.userId, carol.userId].sort();
    const onB = await eventually(() => cb.call(carol, 'GET', `/rooms/${enc(roomId)}/joined_members`), (r) => r.status === 200 && bob.userId in (r.body.joined ?? {}), 60_000);
    expect(Object.keys(onB.body.joined).sort()).toEqual(everyone);
    const onS = await eventually(() => synapse.call(bob, 'GET', `/rooms/${enc(roomId)}/joined_members`), (r) => r.status === 200 && carol.userId in (r.body.joined ?? {}), 60_000);
    expect(Object.keys(onS.body.joined).sort()).toEqual(everyone);

    // Messages: B → Synapse and Synapse → B, in order, once.
    const fromB = Array.from({ length: 5 }, (_, i) => `from B ${i}`);
    for (const body of fromB) expect((await cb.call(carol, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body })).status).toBe(200);
    const fromS = Array.from({ length: 5 }, (_, i) => `from Synapse ${i}`);
    for (const body of fromS) expect((await synapse.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body })).status).toBe(200);
    const bodies = (chunk: Json[], prefix: string) => chunk.filter((e) => e.type === 'm.room.message' && String(e.content?.body).startsWith(prefix)).map((e) => e.content.body as string).reverse();
    const atS = await eventually(() => synapse.call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`), (r) => bodies(r.body.chunk ?? [], 'from B').length >= 5, 60_000);
    expect(bodies(atS.body.chunk, 'from B')).toEqual(fromB);
    const atB = await eventually(() => cb.call(carol, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`), (r) => bodies(r.body.chunk ?? [], 'from Synapse').length >= 5, 60_000);
    expect(bodies(atB.body.chunk, 'from Synapse')).toEqual(fromS);
    // A has them all too.
    const atA = await eventually(() => ca_.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`), (r) => bodies(r.body.chunk ?? [], 'from').length >= 10, 60_000);
    expect(bodies(atA.body.chunk, 'from B')).toEqual(fromB);
    expect(bodies(atA.body.chunk, 'from Synapse')).toEqual(fromS);
  }, 400_000);
});
