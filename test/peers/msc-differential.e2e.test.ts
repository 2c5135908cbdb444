/**
 * The MSCs of issue 17 side by side with Synapse 1.163.2: the same client script against an Axon
 * and a Synapse configured as Element's deployments run it (`max_event_delay_duration`, and the
 * experimental `msc3391_enabled`, `msc4306_enabled`, `msc3381_polls_enabled`), answers compared
 * structurally — status, errcode, field names and JSON types, not values (ids differ). Delayed
 * events (MSC4140), account data deletion (MSC3391), thread subscriptions (MSC4306/MSC4308) and
 * the poll push rules (MSC3930).
 *
 * Intended differences (asserted as such): Axon also advertises the stable-type poll rules
 * (`.m.rule.poll_*`, MSC3930's own names) besides Synapse's `.org.matrix.msc3930.rule.*`, and adds
 * the MSC's `max_delay` to the delay-too-large error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { callJson, enc, eventually, txn, type Json } from '../e2e/clients';
import { loopbackServerName, startSynapse, synapseInstallation, type SynapsePeer } from './synapse';
import { createTestCa, type TestCa } from './test-ca';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`msc-differential.e2e: skipped. ${install.reason}`);

type Call = (token: string | null, method: string, path: string, body?: unknown) => Promise<{ status: number; body: Json }>;
interface Side {
  name: string;
  call: Call;
  register(localpart: string): Promise<{ userId: string; token: string }>;
}

/** The shape of a JSON value: objects by key, arrays by their first element, scalars by type. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.length ? [shape(v[0])] : [];
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, shape((v as Json)[k])]));
  return v === null ? 'null' : typeof v;
}

/** Status and errcode of an answer (what must match exactly). */
const verdict = (r: { status: number; body: Json }) => ({ status: r.status, errcode: r.body?.errcode });

/** One client session's script; every answer it records is compared between the servers. */
async function script(side: Side): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const { call } = side;
  const alice = await side.register(`dif_alice_${Math.random().toString(36).slice(2, 7)}`);
  const bob = await side.register(`dif_bob_${Math.random().toString(36).slice(2, 7)}`);
  const created = await call(alice.token, 'POST', '/createRoom', { preset: 'public_chat' });
  const roomId = created.body.room_id as string;
  const r = enc(roomId);
  expect((await call(bob.token, 'POST', `/join/${r}`, {})).status).toBe(200);
  const DE = '/_matrix/client/unstable/org.matrix.msc4140/delayed_events';

  // ---- delayed events ----
  const msg = await call(alice.token, 'PUT', `/rooms/${r}/send/m.room.message/${txn()}?org.matrix.msc4140.delay=1500`, { msgtype: 'm.text', body: 'delayed' });
  out.scheduleMessage = [verdict(msg), shape(msg.body)];
  const st = await call(alice.token, 'PUT', `/rooms/${r}/state/org.matrix.msc3401.call.member/_k?org.matrix.msc4140.delay=60000`, { hangup: true });
  out.scheduleState = [verdict(st), shape(st.body)];
  const list = await call(alice.token, 'GET', DE);
  const byId = new Map<string, Json>((list.body.delayed_events ?? []).map((e: Json) => [e.delay_id, e]));
  out.list = [verdict(list), list.body.delayed_events?.length, shape(byId.get(msg.body.delay_id)), shape(byId.get(st.body.delay_id))];
  const one = await call(alice.token, 'GET', `${DE}/${st.body.delay_id}`);
  out.getOne = [verdict(one), shape(one.body)];
  out.getOthers = verdict(await call(bob.token, 'GET', `${DE}/${st.body.delay_id}`));
  out.listUnauthed = verdict(await call(null, 'GET', DE));
  out.missingAction = verdict(await call(null, 'POST', `${DE}/${st.body.delay_id}`, {}));
  out.badAction = verdict(await call(null, 'POST', `${DE}/${st.body.delay_id}`, { action: 'explode' }));
  out.unknownId = verdict(await call(null, 'POST', `${DE}/nosuchdelay/cancel`, {}));
  const big = await call(alice.token, 'PUT', `/rooms/${r}/send/m.room.message/${txn()}?org.matrix.msc4140.delay=60001`, { body: 'x' });
  out.tooLarge = verdict(big);
  out.badDelay = verdict(await call(alice.token, 'PUT', `/rooms/${r}/send/m.room.message/${txn()}?org.matrix.msc4140.delay=-1`, { body: 'x' }));
  const restart = await call(null, 'POST', `${DE}/${st.body.delay_id}/restart`, {});
  out.restart = [verdict(restart), shape(restart.body)];
  const cancel = await call(null, 'POST', `${DE}/${st.body.delay_id}`, { action: 'cancel' });
  out.cancel = [verdict(cancel), shape(cancel.body)];
  out.cancelAgain = verdict(await call(null, 'POST', `${DE}/${st.body.delay_id}/cancel`, {}));
  const delivered = await eventually(
    async () => ((await call(bob.token, 'GET', `/rooms/${r}/messages?dir=b&limit=50`)).body.chunk ?? []) as Json[],
    (chunk) => chunk.some((e) => e.content?.body === 'delayed'),
    30_000,
  );
  out.delivered = delivered.filter((e) => e.content?.body === 'delayed').map((e) => [e.sender === alice.userId, e.type]);
  out.listAfter = (await call(alice.token, 'GET', DE)).body;

  // ---- account data deletion ----
  const u = enc(alice.userId);
  const first = await call(alice.token, 'GET', '/sync?timeout=0');
  await call(alice.token, 'PUT', `/user/${u}/account_data/org.example.gone`, { v: 1 });
  await call(alice.token, 'PUT', `/user/${u}/rooms/${r}/account_data/org.example.rgone`, { v: 1 });
  const del = await call(alice.token, 'DELETE', `/_matrix/client/unstable/org.matrix.msc3391/user/${u}/account_data/org.example.gone`);
  out.deleteGlobal = [verdict(del), shape(del.body)];
  out.deleteRoom = verdict(await call(alice.token, 'DELETE', `/_matrix/client/unstable/org.matrix.msc3391/user/${u}/rooms/${r}/account_data/org.example.rgone`));
  out.deleteAbsent = verdict(await call(alice.token, 'DELETE', `/_matrix/client/unstable/org.matrix.msc3391/user/${u}/account_data/org.example.never`));
  out.deleteOthers = verdict(await call(bob.token, 'DELETE', `/_matrix/client/unstable/org.matrix.msc3391/user/${u}/account_data/org.example.gone`));
  out.getDeleted = verdict(await call(alice.token, 'GET', `/user/${u}/account_data/org.example.gone`));
  await call(alice.token, 'PUT', `/user/${u}/account_data/org.example.empty`, { v: 2 });
  out.putEmpty = verdict(await call(alice.token, 'PUT', `/user/${u}/account_data/org.example.empty`, {}));
  out.getEmptied = verdict(await call(alice.token, 'GET', `/user/${u}/account_data/org.example.empty`));
  const inc = await call(alice.token, 'GET', `/sync?timeout=0&since=${enc(first.body.next_batch)}`);
  out.syncDeleted = (inc.body.account_data?.events ?? []).filter((e: Json) => e.type.startsWith('org.example.')).sort((a: Json, b: Json) => (a.type < b.type ? -1 : 1));
  out.syncRoomDeleted = (inc.body.rooms?.join?.[roomId]?.account_data?.events ?? []).filter((e: Json) => e.type.startsWith('org.example.'));
  const fresh = await call(alice.token, 'GET', '/sync?timeout=0');
  out.initialOmits = (fresh.body.account_data?.events ?? []).filter((e: Json) => e.type.startsWith('org.example.'));

  // ---- thread subscriptions ----
  const send = async (content: Json) => (await call(alice.token, 'PUT', `/rooms/${r}/send/m.room.message/${txn()}`, content)).body.event_id as string;
  const root = await send({ msgtype: 'm.text', body: 'root' });
  const reply1 = await send({ msgtype: 'm.text', body: 'r1', 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
  const other = await send({ msgtype: 'm.text', body: 'not in thread' });
  const SUB = `/_matrix/client/unstable/io.element.msc4306/rooms/${r}/thread/${enc(root)}/subscription`;
  out.subNone = verdict(await call(bob.token, 'GET', SUB));
  const put = await call(bob.token, 'PUT', SUB, {});
  out.subPut = [verdict(put), shape(put.body)];
  out.subGet = (await call(bob.token, 'GET', SUB)).body;
  out.subNotInThread = verdict(await call(bob.token, 'PUT', SUB, { automatic: other }));
  out.subUnknownRoot = verdict(await call(bob.token, 'PUT', `/_matrix/client/unstable/io.element.msc4306/rooms/${r}/thread/${enc('$nosuchevent')}/subscription`, {}));
  out.subBadRoot = verdict(await call(bob.token, 'PUT', `/_matrix/client/unstable/io.element.msc4306/rooms/${r}/thread/nope/subscription`, {}));
  const delSub = await call(bob.token, 'DELETE', SUB);
  out.subDelete = [verdict(delSub), shape(delSub.body)];
  out.subConflict = verdict(await call(bob.token, 'PUT', SUB, { automatic: reply1 }));
  const reply2 = await send({ msgtype: 'm.text', body: 'r2', 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
  out.subAutomatic = verdict(await call(bob.token, 'PUT', SUB, { automatic: reply2 }));
  out.subGetAutomatic = (await call(bob.token, 'GET', SUB)).body;
  const LIST = '/_matrix/client/unstable/io.element.msc4308/thread_subscriptions';
  const page = await call(bob.token, 'GET', `${LIST}?dir=b&limit=1`);
  out.listPage = [verdict(page), shape({ ...page.body, subscribed: page.body.subscribed?.[roomId] ? { room: { root: page.body.subscribed[roomId][root] } } : undefined })];
  out.listNoDir = verdict(await call(bob.token, 'GET', LIST));
  out.listBadDir = verdict(await call(bob.token, 'GET', `${LIST}?dir=f`));
  out.listZero = verdict(await call(bob.token, 'GET', `${LIST}?dir=b&limit=0`));
  out.listBadFrom = verdict(await call(bob.token, 'GET', `${LIST}?dir=b&from=bad`));

  // ---- push rules ----
  const rules = (await call(bob.token, 'GET', '/pushrules/')).body.global as Json;
  out.pollRules = (rules.underride as Json[]).map((x) => x.rule_id).filter((id: string) => id.startsWith('.org.matrix.msc3930'));
  out.pollOverride = (rules.override as Json[]).map((x) => x.rule_id).filter((id: string) => id.startsWith('.org.matrix.msc3930'));
  out.postcontent = (rules.postcontent as Json[]).map((x) => [x.rule_id, x.conditions, x.actions]);
  out.postcontentPut = verdict(await call(bob.token, 'PUT', '/pushrules/global/postcontent/mine', { actions: [] }));
  return out;
}

describe.skipIf(skip)('MSC4140, MSC3391, MSC4306, MSC3930: Axon and Synapse 1.163.2 answer alike', () => {
  let ca: TestCa;
  let synapse: SynapsePeer;
  let axon: TestServer;

  beforeAll(async () => {
    ca = createTestCa();
    const [s, a] = await Promise.all([
      loopbackServerName('127.0.0.47').then((serverName) =>
        startSynapse({
          serverName,
          ca,
          configure: (c) => {
            c.max_event_delay_duration = '60s';
            c.experimental_features = { msc3391_enabled: true, msc4306_enabled: true, msc3381_polls_enabled: true };
          },
        }),
      ),
      startTestServer({
        workers: 1,
        configure: (c) => {
          c.delayedEvents = { maxDelayMs: 60_000, maxPerUser: 100 };
          c.threadSubscriptions = { enabled: true };
        },
      }),
    ]);
    synapse = s;
    axon = a;
  }, 240_000);

  afterAll(async () => {
    await Promise.all([synapse?.stop(), axon?.stop()]);
    ca?.cleanup();
  });

  it('runs the same script with the same verdicts and shapes', async () => {
    const synapseSide: Side = {
      name: 'synapse',
      call: (token, method, path, body) => synapse.call(token ? { token } : null, method, path, body),
      register: async (localpart) => {
        const s = await synapse.registerUser(localpart, `pw ${localpart}`);
        return { userId: s.userId, token: s.token };
      },
    };
    const axonSide: Side = {
      name: 'axon',
      call: (token, method, path, body) => callJson(axon, token ? { token } : null, method, path, body),
      register: async (localpart) => {
        const first = await callJson(axon, null, 'POST', '/register', { username: localpart, password: `pw ${localpart}` });
        const done = await callJson(axon, null, 'POST', '/register', { username: localpart, password: `pw ${localpart}`, auth: { type: 'm.login.dummy', session: first.body.session } });
        return { userId: done.body.user_id, token: done.body.access_token };
      },
    };
    const versions = await Promise.all([synapseSide, axonSide].map((s) => s.call(null, 'GET', '/_matrix/client/versions')));
    for (const v of versions) for (const f of ['org.matrix.msc4140', 'org.matrix.msc3391', 'org.matrix.msc4306']) expect(v.body.unstable_features[f], f).toBe(true);
    const [theirs, ours] = await Promise.all([script(synapseSide), script(axonSide)]);
    // Sanity: the script did what it meant to on Synapse.
    expect(theirs.delivered).toEqual([[true, 'm.room.message']]);
    expect(theirs.subConflict).toEqual({ status: 409, errcode: 'IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION' });
    expect(theirs.list).toEqual([{ status: 200, errcode: undefined }, 2, expect.objectContaining({ delay_ms: 'number', delayed_since_ts: 'number', content: { body: 'string', msgtype: 'string' } }), expect.objectContaining({ state_key: 'string' })]);
    expect(theirs.syncDeleted).toEqual([{ type: 'org.example.empty', content: {} }, { type: 'org.example.gone', content: {} }]);
    expect(theirs.syncRoomDeleted).toEqual([{ type: 'org.example.rgone', content: {} }]);
    expect(theirs.pollRules).toEqual(['.org.matrix.msc3930.rule.poll_start_one_to_one', '.org.matrix.msc3930.rule.poll_start', '.org.matrix.msc3930.rule.poll_end_one_to_one', '.org.matrix.msc3930.rule.poll_end']);
    expect(theirs.tooLarge).toEqual({ status: 400, errcode: 'ORG.MATRIX.MSC4140_DELAY_TOO_LARGE' });
    for (const key of Object.keys(theirs)) {
      if (key === 'tooLarge') continue;
      expect(ours[key], key).toEqual(theirs[key]);
    }
    // The delay-too-large verdict is the same; Axon adds the MSC's max_delay field (intended).
    expect(ours.tooLarge).toEqual(theirs.tooLarge);
  }, 240_000);
});
