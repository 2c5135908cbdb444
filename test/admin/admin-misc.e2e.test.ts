/**
 * The admin API's registration tokens, event reports, server notices, media and suspension
 * (issue 20.1) over real HTTP, against Axon and a real Synapse 1.163.2 in the same test (the
 * harness: compare.ts), then what only Axon is checked for (races, restarts of the counting).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callServer, synapseInstallation } from '../peers/synapse';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { registerAxonAdmin, SECRET, startComparison, type Comparison, type Json, type Side } from './compare';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`admin-misc.e2e: skipped. ${install.reason}`);

const SYNAPSE_IP = '127.0.0.74';

/** Intended differences, `step path` → why. */
const ALLOWED: Record<string, string> = {
  'new random token': 'random tokens differ (their length is checked)',
  'report event_json.auth_events*': 'ids of events each server made itself',
  'report event_json.prev_events*': 'ids of events each server made itself',
  'report event_json.hashes*': 'hashes of events each server made itself',
  'report event_json.signatures*': "each server's signature",
  'report event_json.unsigned': 'Synapse keeps its internal age_ts in the stored event; Axon stores none',
  'suspend bad body error': "Synapse answers its validation library's report",
  'suspend missing error': "Synapse answers its validation library's report",
  'notice power notifications': "createRoom's power-level defaults (Axon writes notifications.room, Synapse historical): createRoom's, not the notices'",
  'notice power historical': "createRoom's power-level defaults (Axon writes notifications.room, Synapse historical): createRoom's, not the notices'",
  'notice answer error': "the room's authorization refusal, in each server's words (both 403 M_FORBIDDEN)",
  'media delete deleted_media.0': "each server's own media id",
  'user media media.0.media_id': "each server's own media id",
  'user media media.0.created_ts': 'upload times differ',
  'user media media.0.last_access_ts': 'access times differ',
  'user media media.0.authenticated': 'Synapse on SQLite answers the column as 1; Axon the boolean (as Synapse on Postgres)',
  'user media bad order error': "Synapse answers its validation library's report",
  'new uses float errcode': "Axon's JSON parser refuses non-integer numbers (canonical JSON has none) before the field is looked at",
  'new uses float error': "Axon's JSON parser refuses non-integer numbers (canonical JSON has none) before the field is looked at",
};

/** Intended differences anywhere, by the path's last field. */
const ALLOWED_FIELDS: Record<string, string> = {
  access_token: 'each server its own token format',
  id: "report ids are each server's numbering (Synapse's start at 2)",
  last_seen_ts: 'Synapse writes client IPs in batches every few seconds (null until then); Axon at login',
};

/** A registration with a token, in Synapse's two stages: the token (then pending), dummy (then completed). */
async function tokenStage(side: Side, username: string, token: string, session?: string) {
  let s = session;
  if (!s) s = (await callServer(side, null, 'POST', '/register', { username, password: `${username}-password-1` })).body.session as string;
  const r = await callServer(side, null, 'POST', '/register', { username, password: `${username}-password-1`, auth: { type: 'm.login.registration_token', token, session: s } });
  return { session: s, status: r.status, body: r.body as Json };
}

describe.skipIf(skip)('admin API misc: Axon against Synapse', () => {
  let cmp: Comparison;
  let sides: Side[];
  const both: Comparison['both'] = (...a) => cmp.both(...a);

  beforeAll(async () => {
    cmp = await startComparison({
      synapseIp: SYNAPSE_IP,
      allowed: ALLOWED,
      allowedFields: ALLOWED_FIELDS,
      configureAxon: (c) => {
        c.registration = { ...c.registration, enabled: true, requiresToken: true };
        c.serverNotices = { systemUserLocalpart: 'notices', displayName: 'Notices Bot', avatarUrl: '', roomName: 'Server Notices' };
      },
      configureSynapse: (c) => {
        c.server_notices = { system_mxid_localpart: 'notices', system_mxid_display_name: 'Notices Bot', room_name: 'Server Notices' };
        c.enable_registration = true;
        c.registration_requires_token = true;
        c.rc_registration = { per_second: 100, burst_count: 100 };
        c.rc_registration_token_validity = { per_second: 100, burst_count: 100 };
      },
    });
    sides = cmp.sides;
  }, 240_000);

  afterAll(async () => {
    console.log(`admin-misc.e2e: differences not allowed:\n${cmp?.found.join('\n')}`);
    await cmp?.stop();
  });

  it('registration tokens: CRUD, validity, and the uses registration spends', async () => {
    const T = '/_synapse/admin/v1/registration_tokens';
    const future = Date.now() + 3_600_000;
    const made = await both('new', 'POST', () => `${T}/new`, { token: 'abcd', uses_allowed: 1 });
    expect(made.axon).toEqual({ status: 200, body: { token: 'abcd', uses_allowed: 1, pending: 0, completed: 0, expiry_time: null } });
    const random = await both('new random', 'POST', () => `${T}/new`, { length: 10 });
    expect(random.axon.body.token).toMatch(/^[A-Za-z0-9._~-]{10}$/);
    await both('delete random', 'DELETE', (s) => `${T}/${s.label === 'axon' ? random.axon.body.token : random.synapse.body.token}`);
    await both('new expiring', 'POST', () => `${T}/new`, { token: 'later', expiry_time: future, uses_allowed: null });
    for (const [step, body] of [
      ['new exists', { token: 'abcd' }],
      ['new token not string', { token: 5 }],
      ['new token empty', { token: '' }],
      ['new token long', { token: 'x'.repeat(65) }],
      ['new token chars', { token: 'a b' }],
      ['new length zero', { length: 0 }],
      ['new length string', { length: '5' }],
      ['new uses negative', { uses_allowed: -1 }],
      ['new uses float', { uses_allowed: 1.5 }],
      ['new expiry past', { expiry_time: 1000 }],
      ['new expiry string', { expiry_time: 'soon' }],
    ] as const) {
      const r = await both(step, 'POST', () => `${T}/new`, body);
      expect({ step, status: r.axon.status }).toEqual({ step, status: 400 });
    }
    await both('get', 'GET', () => `${T}/abcd`);
    await both('get unknown', 'GET', () => `${T}/nope`);
    await both('put unchanged', 'PUT', () => `${T}/later`, {});
    await both('put expiry bad', 'PUT', () => `${T}/later`, { expiry_time: 'x' });
    await both('put unknown', 'PUT', () => `${T}/nope`, { uses_allowed: 3 });
    await both('validity', 'GET', () => '/_matrix/client/v1/register/m.login.registration_token/validity?token=abcd', undefined, () => null);
    await both('validity unknown', 'GET', () => '/_matrix/client/v1/register/m.login.registration_token/validity?token=nope', undefined, () => null);
    await both('validity missing', 'GET', () => '/_matrix/client/v1/register/m.login.registration_token/validity', undefined, () => null);

    // The token stage holds the one use: pending, and invalid for anyone else meanwhile.
    const held: Record<string, string> = {};
    for (const side of sides) {
      const r = await tokenStage(side, 'tina', 'abcd');
      expect([side.label, r.status, r.body.completed]).toEqual([side.label, 401, ['m.login.registration_token']]);
      held[side.label] = r.session;
    }
    const pending = await both('get pending', 'GET', () => `${T}/abcd`);
    expect(pending.axon.body).toMatchObject({ pending: 1, completed: 0 });
    await both('validity pending', 'GET', () => '/_matrix/client/v1/register/m.login.registration_token/validity?token=abcd', undefined, () => null);
    for (const side of sides) {
      const other = await tokenStage(side, 'uma', 'abcd');
      expect([side.label, other.status, other.body.errcode]).toEqual([side.label, 401, 'M_UNAUTHORIZED']);
    }
    await both('list', 'GET', () => T);
    await both('list valid', 'GET', () => `${T}?valid=true`);
    await both('list invalid', 'GET', () => `${T}?valid=false`);
    await both('list bad valid', 'GET', () => `${T}?valid=maybe`);
    // The registration completes: the pending use becomes a completed one.
    const done = await both('register', 'POST', () => '/register', (s: Side) => ({ username: 'tina', password: 'tina-password-1', auth: { type: 'm.login.dummy', session: held[s.label] } }), () => null);
    expect(done.axon.status).toBe(200);
    const completed = await both('get completed', 'GET', () => `${T}/abcd`);
    expect(completed.axon.body).toMatchObject({ pending: 0, completed: 1 });
    const raised = await both('put uses', 'PUT', () => `${T}/abcd`, { uses_allowed: 2, expiry_time: future });
    expect(raised.axon.body).toMatchObject({ uses_allowed: 2, completed: 1 });
    await both('list valid after', 'GET', () => `${T}?valid=true`);
    await both('delete', 'DELETE', () => `${T}/abcd`);
    await both('delete again', 'DELETE', () => `${T}/abcd`);
    await both('get deleted', 'GET', () => `${T}/abcd`);

    // Not for non-admins.
    const tina: Record<string, string> = { axon: '', synapse: '' };
    for (const side of sides) tina[side.label] = (await callServer(side, null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'tina' }, password: 'tina-password-1' })).body.access_token;
    const refused = await both('non-admin', 'GET', () => T, undefined, (s) => tina[s.label]!);
    expect(refused.axon.status).toBe(403);
  }, 120_000);

  /** Users made through the admin API (registration needs a token here), logged in: tokens by side. */
  async function makeUser(localpart: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const side of sides) {
      const made = await callServer(side, { token: side.admin.token }, 'PUT', `/_synapse/admin/v2/users/${cmp.u(side, localpart)}`, { password: `${localpart}-password-1` });
      expect([side.label, made.status]).toEqual([side.label, 201]);
      out[side.label] = (await callServer(side, null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: localpart }, password: `${localpart}-password-1` })).body.access_token;
    }
    return out;
  }

  it('event reports: list, filters, paging, one report, dismissal', async () => {
    const ed = await makeUser('ed');
    const rita = await makeUser('rita');
    const room: Record<string, string> = {};
    const events: Record<string, string[]> = { axon: [], synapse: [] };
    for (const side of sides) {
      const r = await callServer(side, { token: ed[side.label]! }, 'POST', '/createRoom', { preset: 'public_chat', name: 'Reported room', room_alias_name: 'reported' });
      expect(r.status).toBe(200);
      room[side.label] = r.body.room_id;
      const rid = encodeURIComponent(r.body.room_id);
      expect((await callServer(side, { token: rita[side.label]! }, 'POST', `/join/${rid}`, {})).status).toBe(200);
      for (const [who, text] of [[ed, 'first'], [ed, 'second'], [rita, 'third']] as const) {
        const sent = await callServer(side, { token: who[side.label]! }, 'PUT', `/rooms/${rid}/send/m.room.message/t-${text}`, { msgtype: 'm.text', body: text });
        events[side.label]!.push(sent.body.event_id);
      }
      // Reports one after the other, so their order is the same on both servers.
      for (const [who, i, reason] of [[rita, 0, 'spam'], [rita, 1, 'rude'], [ed, 2, undefined]] as const) {
        const rep = await callServer(side, { token: who[side.label]! }, 'POST', `/rooms/${rid}/report/${encodeURIComponent(events[side.label]![i]!)}`, reason ? { reason } : {});
        expect([side.label, rep.status]).toEqual([side.label, 200]);
        await new Promise((res) => setTimeout(res, 20));
      }
    }
    const E = '/_synapse/admin/v1/event_reports';
    const list = await both('reports list', 'GET', () => E);
    expect(list.axon.body.total).toBe(3);
    expect(list.axon.body.event_reports.map((r: Json) => r.reason)).toEqual([null, 'rude', 'spam']);
    const ids: Record<string, number[]> = {};
    for (const side of sides) ids[side.label] = ((await callServer(side, { token: side.admin.token }, 'GET', `${E}?dir=f`)).body.event_reports as Json[]).map((r) => r.id);
    await both('reports forwards', 'GET', () => `${E}?dir=f`);
    await both('reports page 1', 'GET', () => `${E}?limit=2`);
    await both('reports page 2', 'GET', () => `${E}?limit=2&from=2`);
    await both('reports by reporter', 'GET', () => `${E}?user_id=rita`);
    await both('reports by room', 'GET', (s) => `${E}?room_id=${encodeURIComponent(room[s.label]!)}`);
    await both('reports by sender', 'GET', (s) => `${E}?event_sender_user_id=${cmp.u(s, 'ed')}`);
    await both('reports bad dir', 'GET', () => `${E}?dir=sideways`);
    await both('reports bad from', 'GET', () => `${E}?from=-1`);
    await both('reports bad limit', 'GET', () => `${E}?limit=x`);
    const one = await both('report', 'GET', (s) => `${E}/${ids[s.label]![0]}`);
    expect(one.axon.body).toMatchObject({ reason: 'spam', name: 'Reported room', canonical_alias: '#reported:<hs>', sender: '@ed:<hs>', user_id: '@rita:<hs>' });
    expect(one.axon.body.event_json.content).toEqual({ msgtype: 'm.text', body: 'first' });
    await both('report unknown', 'GET', () => `${E}/987654`);
    await both('report bad id', 'GET', () => `${E}/abc`);
    await both('report delete', 'DELETE', (s) => `${E}/${ids[s.label]![0]}`);
    await both('report delete again', 'DELETE', (s) => `${E}/${ids[s.label]![0]}`);
    const after = await both('reports after delete', 'GET', () => E);
    expect(after.axon.body.total).toBe(2);
    const refused = await both('reports non-admin', 'GET', () => E, undefined, (s) => rita[s.label]!);
    expect(refused.axon.status).toBe(403);
  }, 120_000);

  it('suspension: Synapse\'s admin endpoint, and what a suspended user may still do', async () => {
    const sam = await makeUser('sam');
    const owner = await makeUser('olga');
    const room: Record<string, string> = {};
    const other: Record<string, string> = {};
    const mine: Record<string, string> = {};
    const room2: Record<string, string> = {};
    for (const side of sides) {
      const r = await callServer(side, { token: owner[side.label]! }, 'POST', '/createRoom', { preset: 'public_chat' });
      room[side.label] = encodeURIComponent(r.body.room_id);
      room2[side.label] = encodeURIComponent((await callServer(side, { token: owner[side.label]! }, 'POST', '/createRoom', { preset: 'public_chat' })).body.room_id);
      expect((await callServer(side, { token: sam[side.label]! }, 'POST', `/join/${room[side.label]}`, {})).status).toBe(200);
      other[side.label] = (await callServer(side, { token: owner[side.label]! }, 'PUT', `/rooms/${room[side.label]}/send/m.room.message/o1`, { msgtype: 'm.text', body: 'hi' })).body.event_id;
      mine[side.label] = (await callServer(side, { token: sam[side.label]! }, 'PUT', `/rooms/${room[side.label]}/send/m.room.message/s1`, { msgtype: 'm.text', body: 'oops' })).body.event_id;
    }
    const S = (s: Side, who = 'sam') => `/_synapse/admin/v1/suspend/${cmp.u(s, who)}`;
    const on = await both('suspend', 'PUT', (s) => S(s), { suspend: true });
    expect(on.axon.body).toEqual({ 'user_@sam:<hs>_suspended': true });
    await both('suspend bad body', 'PUT', (s) => S(s), { suspend: 'yes' });
    await both('suspend missing', 'PUT', (s) => S(s), {});
    await both('suspend unknown', 'PUT', (s) => S(s, 'nobody'), { suspend: true });
    await both('suspend remote', 'PUT', () => `/_synapse/admin/v1/suspend/${encodeURIComponent('@x:elsewhere.example')}`, { suspend: true });
    const details = await both('suspended details', 'GET', (s) => `/_synapse/admin/v2/users/${cmp.u(s, 'sam')}`);
    expect(details.axon.body.suspended).toBe(true);
    const as = (s: Side) => sam[s.label]!;
    const refusals = [
      await both('suspended send', 'PUT', (s) => `/rooms/${room[s.label]}/send/m.room.message/s2`, { msgtype: 'm.text', body: 'more' }, as),
      await both('suspended state', 'PUT', (s) => `/rooms/${room[s.label]}/state/m.room.topic`, { topic: 'x' }, as),
      await both('suspended join', 'POST', (s) => `/join/${room2[s.label]}`, {}, as),
      await both('suspended invite', 'POST', (s) => `/rooms/${room[s.label]}/invite`, (s: Side) => ({ user_id: `@boss:${s.serverName}` }), as),
      await both('suspended displayname', 'PUT', (s) => `/profile/${cmp.u(s, 'sam')}/displayname`, { displayname: 'Sam!' }, as),
      await both('suspended redact other', 'PUT', (s) => `/rooms/${room[s.label]}/redact/${encodeURIComponent(other[s.label]!)}/r1`, {}, as),
      await both('suspended create room', 'POST', () => '/createRoom', {}, as),
    ];
    for (const r of refusals) expect([r.axon.status, r.axon.body.errcode]).toEqual([403, 'M_USER_SUSPENDED']);
    // Reading, redacting their own events and leaving still work.
    for (const side of sides) expect([side.label, (await callServer(side, { token: sam[side.label]! }, 'GET', `/rooms/${room[side.label]}/messages?dir=b&limit=1`)).status]).toEqual([side.label, 200]);
    expect((await both('suspended whoami', 'GET', () => '/account/whoami', undefined, as)).axon.status).toBe(200);
    expect((await both('suspended redact own', 'PUT', (s) => `/rooms/${room[s.label]}/redact/${encodeURIComponent(mine[s.label]!)}/r2`, {}, as)).axon.status).toBe(200);
    expect((await both('suspended leave', 'POST', (s) => `/rooms/${room[s.label]}/leave`, {}, as)).axon.status).toBe(200);
    const off = await both('unsuspend', 'PUT', (s) => S(s), { suspend: false });
    expect(off.axon.body).toEqual({ 'user_@sam:<hs>_suspended': false });
    expect((await both('unsuspended join', 'POST', (s) => `/join/${room2[s.label]}`, {}, as)).axon.status).toBe(200);
    const refused = await both('suspend non-admin', 'PUT', (s) => S(s, 'olga'), { suspend: true }, as);
    expect(refused.axon.status).toBe(403);
  }, 120_000);

  it('server notices: a notices room per user, tagged, that the user cannot answer in', async () => {
    const nina = await makeUser('nina');
    const N = '/_synapse/admin/v1/send_server_notice';
    const first = await both('notice', 'POST', () => N, (s: Side) => ({ user_id: `@nina:${s.serverName}`, content: { msgtype: 'm.text', body: 'Welcome' } }));
    expect(first.axon.status).toBe(200);
    const room: Record<string, string> = {};
    for (const side of sides) {
      const sync = await callServer(side, { token: nina[side.label]! }, 'GET', '/sync?timeout=0');
      const invites = Object.keys(sync.body.rooms?.invite ?? {});
      expect([side.label, invites.length]).toEqual([side.label, 1]);
      room[side.label] = encodeURIComponent(invites[0]!);
    }
    await both('notice tags', 'GET', (s) => `/user/${cmp.u(s, 'nina')}/rooms/${room[s.label]}/tags`, undefined, (s) => nina[s.label]!);
    const joined = await both('notice join', 'POST', (s) => `/join/${room[s.label]}`, {}, (s) => nina[s.label]!);
    expect(joined.axon.status).toBe(200);
    await both('notice room name', 'GET', (s) => `/rooms/${room[s.label]}/state/m.room.name`, undefined, (s) => nina[s.label]!);
    const power = await both('notice power', 'GET', (s) => `/rooms/${room[s.label]}/state/m.room.power_levels`, undefined, (s) => nina[s.label]!);
    expect(power.axon.body.users_default).toBe(-10);
    await both('notice members', 'GET', (s) => `/rooms/${room[s.label]}/joined_members`, undefined, (s) => nina[s.label]!);
    const answer = await both('notice answer', 'PUT', (s) => `/rooms/${room[s.label]}/send/m.room.message/a1`, { msgtype: 'm.text', body: 'thanks' }, (s) => nina[s.label]!);
    expect(answer.axon.status).toBe(403);
    // A second notice goes to the same room; a transaction id makes a retry idempotent.
    await both('notice 2', 'POST', () => N, (s: Side) => ({ user_id: `@nina:${s.serverName}`, content: { msgtype: 'm.text', body: 'Second' } }));
    const ids: Record<string, string[]> = { axon: [], synapse: [] };
    for (let i = 0; i < 2; i++) {
      for (const side of sides) {
        const r = await callServer(side, { token: side.admin.token }, 'PUT', `${N}/txn-1`, { user_id: `@nina:${side.serverName}`, content: { msgtype: 'm.text', body: 'Once' } });
        expect([side.label, r.status]).toEqual([side.label, 200]);
        ids[side.label]!.push(r.body.event_id);
      }
    }
    expect(ids.axon![0]).toBe(ids.axon![1]);
    expect(ids.synapse![0]).toBe(ids.synapse![1]);
    for (const side of sides) {
      const msgs = await callServer(side, { token: nina[side.label]! }, 'GET', `/rooms/${room[side.label]}/messages?dir=b&limit=10&filter=${encodeURIComponent(JSON.stringify({ types: ['m.room.message'] }))}`);
      expect([side.label, msgs.body.chunk.map((e: Json) => e.content.body)]).toEqual([side.label, ['Once', 'Second', 'Welcome']]);
    }
    await both('notice missing content', 'POST', () => N, (s: Side) => ({ user_id: `@nina:${s.serverName}` }));
    await both('notice remote', 'POST', () => N, { user_id: '@x:elsewhere.example', content: { body: 'x' } });
    await both('notice unknown', 'POST', () => N, (s: Side) => ({ user_id: `@nobody:${s.serverName}`, content: { body: 'x' } }));
    const refused = await both('notice non-admin', 'POST', () => N, (s: Side) => ({ user_id: `@nina:${s.serverName}`, content: { body: 'x' } }), (s) => nina[s.label]!);
    expect(refused.axon.status).toBe(403);
  }, 120_000);

  it('media: quarantine, release and delete one item', async () => {
    const mia = await makeUser('mia');
    const media: Record<string, string> = {};
    for (const side of sides) {
      const r = await fetch(`${side.baseUrl}/_matrix/media/v3/upload?filename=a.txt`, { method: 'POST', headers: { Authorization: `Bearer ${mia[side.label]}`, 'Content-Type': 'text/plain' }, body: 'hello media' });
      expect([side.label, r.status]).toEqual([side.label, 200]);
      media[side.label] = ((await r.json()) as { content_uri: string }).content_uri.split('/').pop()!;
    }
    const download = async (side: Side) => (await fetch(`${side.baseUrl}/_matrix/client/v1/media/download/${side.serverName}/${media[side.label]}`, { headers: { Authorization: `Bearer ${mia[side.label]}` } })).status;
    const M = '/_synapse/admin/v1/media';
    await both('quarantine', 'POST', (s) => `${M}/quarantine/${s.serverName}/${media[s.label]}`, {});
    for (const side of sides) expect([side.label, await download(side)]).toEqual([side.label, 404]);
    await both('quarantine unknown', 'POST', (s) => `${M}/quarantine/${s.serverName}/nosuchmedia`, {});
    await both('unquarantine', 'POST', (s) => `${M}/unquarantine/${s.serverName}/${media[s.label]}`, {});
    for (const side of sides) expect([side.label, await download(side)]).toEqual([side.label, 200]);
    const userMedia = (s: Side) => `/_synapse/admin/v1/users/${encodeURIComponent(`@mia:${s.serverName}`)}/media`;
    await both('protect', 'POST', (s) => `${M}/protect/${media[s.label]}`, {});
    const listed = await both('user media', 'GET', userMedia);
    expect(listed.axon.body.total).toBe(1);
    await both('unprotect', 'POST', (s) => `${M}/unprotect/${media[s.label]}`, {});
    await both('user media bad order', 'GET', (s) => `${userMedia(s)}?order_by=nope`);
    const refused = await both('media non-admin', 'DELETE', (s) => `${M}/${s.serverName}/${media[s.label]}`, undefined, (s) => mia[s.label]!);
    expect(refused.axon.status).toBe(403);
    await both('media delete remote', 'DELETE', () => `${M}/elsewhere.example/abc`);
    const deleted = await both('media delete', 'DELETE', (s) => `${M}/${s.serverName}/${media[s.label]}`);
    expect(deleted.axon.body.total).toBe(1);
    await both('media delete again', 'DELETE', (s) => `${M}/${s.serverName}/${media[s.label]}`);
    for (const side of sides) expect([side.label, await download(side)]).toEqual([side.label, 404]);
  }, 120_000);

  it('has no differences that are not allowed', () => {
    expect(cmp.found).toEqual([]);
  });
});

describe('admin API misc: Axon only', () => {
  let axon: TestServer;
  let admin: { token: string; userId: string };
  const call = (token: string | null, method: string, path: string, body?: unknown) => callServer(axon, token === null ? null : { token }, method, path, body);

  beforeAll(async () => {
    axon = await startTestServer({ configure: (c) => { c.registration = { ...c.registration, sharedSecret: SECRET, enabled: true, requiresToken: true }; } });
    admin = await registerAxonAdmin(axon.baseUrl, 'root', 'root-password-1');
  }, 120_000);
  afterAll(async () => {
    await axon?.stop();
  });

  it('registrations racing for the last use of a token: one wins', async () => {
    const T = '/_synapse/admin/v1/registration_tokens';
    expect((await call(admin.token, 'POST', `${T}/new`, { token: 'last-one', uses_allowed: 1 })).status).toBe(200);
    const side = { baseUrl: axon.baseUrl } as Side;
    const racers = await Promise.all(Array.from({ length: 8 }, (_, i) => tokenStage(side, `racer${i}`, 'last-one')));
    const winners = racers.filter((r) => r.status === 401 && r.body.completed?.includes('m.login.registration_token'));
    expect(winners).toHaveLength(1);
    expect(racers.filter((r) => r.status === 401 && r.body.error === 'Invalid registration token')).toHaveLength(7);
    expect((await call(admin.token, 'GET', `${T}/last-one`)).body).toMatchObject({ pending: 1, completed: 0 });
    const winner = racers.indexOf(winners[0]!);
    const done = await call(null, 'POST', '/register', { username: `racer${winner}`, password: `racer${winner}-password-1`, auth: { type: 'm.login.dummy', session: winners[0]!.session } });
    expect(done.status).toBe(200);
    expect((await call(admin.token, 'GET', `${T}/last-one`)).body).toEqual({ token: 'last-one', uses_allowed: 1, pending: 0, completed: 1, expiry_time: null });
    expect((await call(null, 'GET', '/_matrix/client/v1/register/m.login.registration_token/validity?token=last-one')).body).toEqual({ valid: false });
    // Finishing a session twice counts once (its pending use is gone; the account exists).
    const again = await call(null, 'POST', '/register', { username: `racer${winner}`, password: 'x', auth: { type: 'm.login.dummy', session: winners[0]!.session } });
    expect(again.status).toBe(400);
    expect((await call(admin.token, 'GET', `${T}/last-one`)).body.completed).toBe(1);
  }, 120_000);

  it("serves the spec's suspend endpoints (v1.18): admins only, local users, existing and new sessions", async () => {
    const uid = (l: string) => encodeURIComponent(`@${l}:${axon.serverName}`);
    expect((await call(admin.token, 'PUT', `/_synapse/admin/v2/users/${uid('vic')}`, { password: 'vic-password-1' })).status).toBe(201);
    const loginVic = async () => (await callServer(axon, null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'vic' }, password: 'vic-password-1' })).body.access_token as string;
    const vic = await loginVic();
    const path = `/_matrix/client/v1/admin/suspend/${uid('vic')}`;
    expect((await call(vic, 'GET', path)).status).toBe(403);
    expect((await call(vic, 'PUT', `/_matrix/client/v1/admin/suspend/${uid('nobody')}`, { suspended: true })).status).toBe(403);
    expect((await call(admin.token, 'GET', path)).body).toEqual({ suspended: false });
    const bad = await call(admin.token, 'PUT', path, { suspended: 'yes' });
    expect([bad.status, bad.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const self = await call(admin.token, 'PUT', `/_matrix/client/v1/admin/suspend/${uid('root')}`, { suspended: true });
    expect(self.status).toBe(400);
    const remote = await call(admin.token, 'GET', `/_matrix/client/v1/admin/suspend/${encodeURIComponent('@x:elsewhere.example')}`);
    expect([remote.status, remote.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    expect((await call(admin.token, 'GET', `/_matrix/client/v1/admin/suspend/${uid('nobody')}`)).status).toBe(404);
    const room = (await call(admin.token, 'POST', '/createRoom', { preset: 'public_chat' })).body.room_id as string;
    expect((await call(admin.token, 'PUT', path, { suspended: true })).body).toEqual({ suspended: true });
    expect((await call(admin.token, 'GET', path)).body).toEqual({ suspended: true });
    // The session vic had, and a new one: both read-only.
    for (const token of [vic, await loginVic()]) {
      const r = await call(token, 'POST', `/join/${encodeURIComponent(room)}`, {});
      expect([r.status, r.body.errcode]).toEqual([403, 'M_USER_SUSPENDED']);
      expect((await call(token, 'GET', '/joined_rooms')).status).toBe(200);
    }
    expect((await call(admin.token, 'PUT', path, { suspended: false })).body).toEqual({ suspended: false });
    expect((await call(vic, 'POST', `/join/${encodeURIComponent(room)}`, {})).status).toBe(200);
    expect((await call(admin.token, 'GET', `/_synapse/admin/v2/users/${uid('vic')}`)).body.suspended).toBe(false);
  }, 120_000);

  it('server notices are off without a system user: 400, nothing made', async () => {
    const r = await call(admin.token, 'POST', '/_synapse/admin/v1/send_server_notice', { user_id: admin.userId, content: { msgtype: 'm.text', body: 'x' } });
    expect([r.status, r.body.errcode, r.body.error]).toEqual([400, 'M_UNKNOWN', 'Server notices are not enabled on this server']);
    expect(await axon.redis.hlen(`${axon.config.redis.keyPrefix}{servernotices}:rooms`)).toBe(0);
  }, 60_000);
});
