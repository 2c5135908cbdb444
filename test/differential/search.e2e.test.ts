/**
 * The differential test for server-side search (issue 21): the session of search-script.ts runs
 * against an Axon (real front and workers on the test Redis) and a real Synapse 1.163.2 (SQLite:
 * its full-text search through FTS4), and every answer is compared structurally (diff.ts). Where
 * the order is by rank the result lists are compared as sets (BM25 against Synapse's ranking:
 * the algorithms differ); `recent` order must match. Every other difference must be in the
 * allowlist below, with its reason; an entry no difference needs is reported.
 *
 * Skips itself outside CI when Synapse is not installed (scripts/lib/ensure.sh's `ensure_synapse`).
 * `AXON_DIFF_REPORT=path` writes every difference to that file, `AXON_DIFF_DUMP=path` both answers.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopbackServerName, startSynapse, synapseInstallation, type SynapsePeer } from '../peers/synapse';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { allowlist, type AllowedDifference } from './allowlist';
import { formatDifference, normalize, patternMatches, structuralDiff, type Difference, type JsonValue } from './diff';
import { runSession, type Captures, type Target } from './session';
import { RANKED_STEPS, searchSession } from './search-script';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`search differential: skipped. ${install.reason}`);

const RANK_DIFFERS = 'Ranking differs by algorithm (Axon: BM25 over the rooms searched; Synapse: FTS4 matchinfo on SQLite, ts_rank on PostgreSQL), so rank values differ; the result sets are compared, not the order';

const LEGACY = "Synapse's legacy event format copies `age` and `user_id` (= sender) to the event's top level; the spec's ClientEvent has neither there, and Axon sends neither";
const REDACTED_COUNTED = 'Synapse keeps a redacted event in event_search until it prunes redacted content, and counts it (its results leave it out); Axon takes it out of the index when the redaction arrives. Here: m7 ("herons", matched by both)';
const COUNT_STEPS = ['search heron recent', 'search heron rank', 'search heron rank page 1', 'search heron recent page 1', 'search heron recent page 2', 'search not_rooms filter', 'search senders filter', 'search types filter', 'search heron grouped', 'search after redaction'];

export const searchAllowlist: AllowedDifference[] = [
  { path: '* search_categories.room_events.results[*].rank', kind: 'value', reason: RANK_DIFFERS },
  { path: '* search_categories.room_events.groups.*.order', kind: 'value', reason: `${RANK_DIFFERS}: a group's order is its best result's place` },
  { path: 'search heron rank page 1 search_categories.room_events.results[*]', reason: `${RANK_DIFFERS}: the first 3 of 7 by rank are not the same 3 (Axon ranks the short all-heron messages first, Synapse the topic)` },
  { path: 'search heron rank page 1 search_categories.room_events.next_batch', kind: 'only-axon', reason: 'Synapse pages only `recent` searches; Axon pages `rank` ones too (the spec gives next_batch to both orders)' },
  ...COUNT_STEPS.map((step) => ({ path: `${step} search_categories.room_events.count`, kind: 'value' as const, reason: REDACTED_COUNTED })),
  { path: '* search_categories.room_events.highlights', reason: 'Highlights: Axon lists the words of the results that matched, as written (`Heron`, `herons`, `Zürich`), which clients can find in the text; Synapse on SQLite lists the query terms (on PostgreSQL, the words ts_headline marks)' },
  { path: 'search prefix search_categories.room_events', reason: "A prefix of the last word (`kingfi`): Axon matches it as a prefix (as Synapse on PostgreSQL does, `:*`); Synapse on SQLite matches whole words only, so finds nothing" },
  { path: '* search_categories.room_events.results[*].result.age', kind: 'only-synapse', reason: LEGACY },
  { path: '* search_categories.room_events.results[*].result.user_id', kind: 'only-synapse', reason: LEGACY },
  { path: '* search_categories.room_events.results[*].context', kind: 'only-synapse', value: '{}', reason: 'Synapse sends an empty `context` when no event_context was asked for; Axon leaves it out (optional in the spec)' },
  { path: '*.profile_info.*.avatar_url', kind: 'only-synapse', value: 'null', reason: 'Synapse sends `avatar_url: null` for a user without one; Axon leaves the key out (optional in the spec)' },
  { path: 'search include_state search_categories.room_events.state.*.unsigned.prev_content', kind: 'only-axon', reason: 'Axon says what a state event replaced (`prev_content`, `prev_sender`) in every section, as the spec allows; Synapse leaves it out here' },
  { path: 'search include_state search_categories.room_events.state.*.unsigned.prev_sender', kind: 'only-axon', reason: 'As prev_content above' },
  { path: 'search no category errcode', kind: 'value', reason: 'A body without room_events: Axon answers M_BAD_JSON (the body is not what the endpoint takes), Synapse M_UNKNOWN (a SynapseError without a code)' },
  { path: 'search no search_term errcode', kind: 'value', reason: 'As above: Axon M_BAD_JSON, Synapse M_UNKNOWN' },
  { path: 'search bad order_by errcode', kind: 'value', reason: 'An unknown order_by: Axon M_INVALID_PARAM (a parameter with a bad value), Synapse M_UNKNOWN' },
  // The general ones (legacy fields in state and context events, createRoom power levels, m.topic) from the CS differential test.
  ...allowlist,
];

const eventIdOf = (v: JsonValue): string => {
  const r = v && typeof v === 'object' && !Array.isArray(v) ? (v.result as Record<string, JsonValue> | undefined) : undefined;
  return r && typeof r === 'object' ? String(r.event_id) : JSON.stringify(v);
};
const eventKey = (v: JsonValue): string => (v && typeof v === 'object' && !Array.isArray(v) ? `${String(v.type)}|${String(v.state_key)}|${JSON.stringify(v.content)}` : JSON.stringify(v));

function unorderedFor(step: string) {
  return (path: string) => {
    if (path === 'search_categories.room_events.highlights') return (v: JsonValue) => JSON.stringify(v);
    if (/^search_categories\.room_events\.state\./.test(path)) return eventKey;
    if (RANKED_STEPS.has(step) && path === 'search_categories.room_events.results') return eventIdOf;
    if (RANKED_STEPS.has(step) && /groups\.[^.]+\.[^.]+\.results$/.test(path)) return (v: JsonValue) => String(v);
    return undefined;
  };
}

describe.skipIf(skip)('differential: search against Axon and Synapse', () => {
  let ca: TestCa;
  let synapse: SynapsePeer;
  let axon: TestServer;

  beforeAll(async () => {
    ca = createTestCa();
    [synapse, axon] = await Promise.all([
      startSynapse({
        serverName: await loopbackServerName('127.0.0.58'),
        ca,
        logLevel: 'WARNING',
        configure: (c) => {
          c.enable_registration = true;
          c.enable_registration_without_verification = true;
          c.default_room_version = '12';
        },
      }),
      startTestServer(),
    ]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([synapse?.stop(), axon?.stop()]);
    ca?.cleanup();
  });

  it('searches as Synapse does, but for the allowlisted differences', async () => {
    const targets: Target[] = [
      { label: 'axon', baseUrl: axon.baseUrl, serverName: axon.serverName },
      { label: 'synapse', baseUrl: synapse.baseUrl, serverName: synapse.serverName },
    ];
    const [a, s] = await Promise.all(targets.map((t) => runSession(t, searchSession, new Map([['hs', t.serverName]]))));
    const names = (captures: Captures, serverName: string) => {
      const captured = new Map<string, string>();
      for (const [name, value] of captures) if (!name.endsWith('.token') && !name.endsWith('.session')) captured.set(value, name);
      return { captured, serverName };
    };
    const na = names(a!.captures, axon.serverName);
    const ns = names(s!.captures, synapse.serverName);
    const found: { where: string; d: Difference; allowedBy?: string }[] = [];
    searchSession.forEach((step, i) => {
      if (step.skipCompare) return;
      const ra = a!.results[i]!;
      const rs = s!.results[i]!;
      const diffs: Difference[] = [];
      if (ra.status !== rs.status) diffs.push({ path: 'status', kind: 'value', axon: String(ra.status), synapse: String(rs.status) });
      diffs.push(...structuralDiff(normalize(ra.body, na), normalize(rs.body, ns), { unordered: unorderedFor(step.name) }));
      for (const d of diffs) {
        const allowed = searchAllowlist.find((e) => (!e.kind || e.kind === d.kind) && (e.value === undefined || e.value === (d.axon ?? d.synapse)) && patternMatches(e.path, `${step.name} ${d.path}`));
        found.push({ where: step.name, d, allowedBy: allowed?.path });
      }
    });
    const lines = found.map((f) => `${f.allowedBy ? '  (allowed) ' : ''}${formatDifference(f.where, f.d)}`);
    if (process.env.AXON_DIFF_DUMP) writeFileSync(process.env.AXON_DIFF_DUMP, JSON.stringify(searchSession.map((step, i) => ({ step: step.name, axon: a!.results[i]!.body, synapse: s!.results[i]!.body })), null, 1));
    if (process.env.AXON_DIFF_REPORT) writeFileSync(process.env.AXON_DIFF_REPORT, `${lines.join('\n')}\n`);
    const unused = searchAllowlist.filter((e) => !allowlist.includes(e)).filter((e) => !found.some((f) => f.allowedBy === e.path));
    if (unused.length) console.warn(`search differential: allowlist entries no difference needs:\n${unused.map((e) => `  ${e.path}`).join('\n')}`);
    const failing = found.filter((f) => !f.allowedBy);
    console.log(`search differential: ${searchSession.length} steps, ${found.length - failing.length} allowed differences, ${failing.length} not allowed`);
    expect(failing.map((f) => formatDifference(f.where, f.d))).toEqual([]);
  }, 300_000);
});
