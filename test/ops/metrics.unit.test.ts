/**
 * The metric definitions: names in Prometheus conventions with Synapse's where the concept is
 * the same, bounded labels (endpoint groups from route patterns, methods folded to a known set),
 * gauges summed from their sources, the federation queue figures from destination actor states,
 * and the metrics server's contract (`/metrics`, then the handlers given, then 404). With
 * promtool installed, the whole exposition is checked by it as well.
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { PREFLIGHT_ENDPOINT, RequestMetrics, endpointGroup, methodLabel } from '../../src/http/request-metrics';
import { destinationStats } from '../../src/federation/sender/metrics';
import { destinationSources, enableProcessMetrics, familyCounters, httpInFlightSources, initialiseWorkerSeries, registry, syncWaitingSources, workerLocalSources } from '../../src/ops/metrics';
import { startMetricsServer, type MetricsRouteHandler } from '../../src/ops/metrics-server';
import { prometheusInstalled, promtoolCheckMetrics } from '../peers/prometheus';
import type { DestinationState } from '../../actors/destination';

async function series(name: string): Promise<{ labels: Record<string, string | number>; value: number }[]> {
  const m = registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  return (await m.get()).values.map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value }));
}

describe('endpoint groups', () => {
  it.each([
    ['/_matrix/client/v3/sync', 'client/sync'],
    ['/_matrix/client/r0/sync', 'client/sync'],
    ['/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId', 'client/rooms/send'],
    ['/_matrix/client/v3/rooms/:roomId/state/:eventType/:stateKey', 'client/rooms/state'],
    ['/_matrix/client/v3/user/:userId/rooms/:roomId/account_data/:type', 'client/user/account_data'],
    ['/_matrix/client/v3/login', 'client/login'],
    ['/_matrix/client/unstable/org.matrix.simplified_msc3575/sync', 'client/org.matrix.simplified_msc3575/sync'],
    ['/_matrix/federation/v1/send/:txnId', 'federation/send'],
    ['/_matrix/federation/v2/send_join/:roomId/:eventId', 'federation/send_join'],
    ['/_matrix/key/v2/server', 'key/server'],
    ['/_matrix/media/v3/download/:serverName/:mediaId', 'media/download'],
    ['/_matrix/client/v1/media/thumbnail/:serverName/:mediaId', 'client/media/thumbnail'],
    ['/_synapse/admin/v2/users/:userId', 'admin/users'],
    ['/_synapse/client/v1/foo', 'synapse_client/foo'],
    ['/.well-known/matrix/client', '.well-known/matrix/client'],
    ['/health', 'health'],
    ['/', 'root'],
  ])('%s → %s', (pattern, group) => {
    expect(endpointGroup(pattern)).toBe(group);
  });

  it('never depends on parameter values: every room and user id is one group', () => {
    // The group is a function of the pattern only; parameters (`:roomId`) never reach it.
    expect(endpointGroup('/_matrix/client/v3/rooms/:roomId/messages')).toBe('client/rooms/messages');
  });

  it('folds methods outside the HTTP set into OTHER (a client cannot mint label values)', () => {
    expect(['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'].map(methodLabel)).toEqual(['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH']);
    expect(methodLabel('BREW')).toBe('OTHER');
    expect(methodLabel('PROPFIND')).toBe('OTHER');
  });
});

describe('metric definitions', () => {
  it('has the names, types and labels the dashboard and README use', async () => {
    const byName = new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, m]));
    const expected: [string, string, string[]][] = [
      ['axon_http_server_requests_received_total', 'counter', ['listener', 'method', 'endpoint']],
      ['axon_http_server_responses_total', 'counter', ['listener', 'method', 'endpoint', 'code']],
      ['axon_http_server_response_time_seconds', 'histogram', ['listener', 'method', 'endpoint']],
      ['axon_http_server_in_flight_requests', 'gauge', ['listener']],
      ['axon_sync_waiting_requests', 'gauge', []],
      ['axon_sync_wakeups_total', 'counter', []],
      ['axon_sync_notifications_received_total', 'counter', []],
      ['axon_events_persisted_events_total', 'counter', []],
      ['axon_actor_messages_applied_total', 'counter', ['family']],
      ['axon_actor_commits_total', 'counter', ['family']],
      ['axon_actor_dead_letters_total', 'counter', ['family']],
      ['axon_actor_inbox_lag_messages', 'gauge', ['family']],
      ['axon_actor_inbox_pending_messages', 'gauge', ['family']],
      ['axon_actor_dead_letter_messages', 'gauge', ['family']],
      ['axon_actor_buffered_messages', 'gauge', ['family']],
      ['axon_lease_shards_owned', 'gauge', ['family']],
      ['axon_lease_acquisitions_total', 'counter', ['family', 'reason']],
      ['axon_lease_losses_total', 'counter', ['family']],
      ['axon_shard_moves_total', 'counter', ['family', 'direction']],
      ['axon_lease_round_duration_seconds', 'histogram', []],
      ['axon_federation_destinations', 'gauge', []],
      ['axon_federation_transaction_queue_pending_destinations', 'gauge', []],
      ['axon_federation_destinations_backing_off', 'gauge', []],
      ['axon_federation_transaction_queue_pending_pdus', 'gauge', []],
      ['axon_federation_transaction_queue_pending_edus', 'gauge', []],
      ['axon_federation_client_sent_transactions_total', 'counter', ['outcome']],
      ['axon_push_http_pushes_processed_total', 'counter', []],
      ['axon_push_http_pushes_failed_total', 'counter', []],
      ['axon_push_pushkeys_rejected_total', 'counter', []],
      ['axon_push_notifications_given_up_total', 'counter', []],
      ['axon_process_info', 'gauge', ['role', 'id', 'version']],
    ];
    for (const [name, type, labels] of expected) {
      const m = byName.get(name);
      expect(m, name).toBeDefined();
      expect(String(m!.type), name).toBe(type);
      const registered = registry.getSingleMetric(name) as unknown as { labelNames: string[] };
      expect([...registered.labelNames].sort(), name).toEqual([...labels].sort());
    }
    // Conventions: our own names carry the prefix; counters and only counters end in _total.
    for (const m of byName.values()) {
      if (!m.name.startsWith('axon_')) continue;
      expect(m.name.endsWith('_total'), m.name).toBe(String(m.type) === 'counter');
    }
  });

  it('labels HTTP requests by endpoint group and status, timing each answer', async () => {
    const metrics = new RequestMetrics('unit-test');
    const group = metrics.group('/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId');
    metrics.received('PUT', group);
    metrics.answered('PUT', group, '200', 0.003);
    metrics.received('PUT', group);
    metrics.answered('PUT', group, '429', 0.2);
    metrics.received('OPTIONS', PREFLIGHT_ENDPOINT);
    metrics.answered('OPTIONS', PREFLIGHT_ENDPOINT, '200', 0.0001);
    const received = (await series('axon_http_server_requests_received_total')).filter((s) => s.labels.listener === 'unit-test');
    expect(received).toEqual(
      expect.arrayContaining([
        { labels: { listener: 'unit-test', method: 'PUT', endpoint: 'client/rooms/send' }, value: 2 },
        { labels: { listener: 'unit-test', method: 'OPTIONS', endpoint: 'cors_preflight' }, value: 1 },
      ]),
    );
    const responses = (await series('axon_http_server_responses_total')).filter((s) => s.labels.listener === 'unit-test' && s.labels.endpoint === 'client/rooms/send');
    expect(responses.map((s) => [s.labels.code, s.value]).sort()).toEqual([['200', 1], ['429', 1]]);
    const hist = (await series('axon_http_server_response_time_seconds')).filter((s) => s.labels.listener === 'unit-test' && s.labels.endpoint === 'client/rooms/send');
    const le = (bound: number) => hist.find((s) => s.labels.le === bound)!.value;
    expect(le(0.0025)).toBe(0);
    expect(le(0.005)).toBe(1);
    expect(le(0.25)).toBe(2);
  });

  it('sums a gauge over its sources at scrape time, and forgets a removed source', async () => {
    const a = httpInFlightSources.add(() => [{ labels: { listener: 'g-test' }, value: 3 }]);
    const b = httpInFlightSources.add(() => [{ labels: { listener: 'g-test' }, value: 4 }]);
    const failing = syncWaitingSources.add(() => {
      throw new Error('a broken source');
    });
    const waiting = syncWaitingSources.add(() => [{ labels: {}, value: 2 }]);
    expect((await series('axon_http_server_in_flight_requests')).find((s) => s.labels.listener === 'g-test')?.value).toBe(7);
    // A source that throws leaves only itself out.
    expect((await series('axon_sync_waiting_requests'))[0]?.value).toBe(2);
    b();
    expect((await series('axon_http_server_in_flight_requests')).find((s) => s.labels.listener === 'g-test')?.value).toBe(3);
    a();
    failing();
    waiting();
    expect((await series('axon_http_server_in_flight_requests')).find((s) => s.labels.listener === 'g-test')).toBeUndefined();
  });

  it('reports owned shards and buffered messages per family from worker sources', async () => {
    const remove = workerLocalSources.add(() => ({ owned: { room: 5, user: 7 }, buffered: { room: 1, user: 0 } }));
    const remove2 = workerLocalSources.add(() => ({ owned: { room: 1, user: 1 }, buffered: { room: 2, user: 3 } }));
    expect((await series('axon_lease_shards_owned')).map((s) => [s.labels.family, s.value]).sort()).toEqual([['room', 6], ['user', 8]]);
    expect((await series('axon_actor_buffered_messages')).map((s) => [s.labels.family, s.value]).sort()).toEqual([['room', 3], ['user', 3]]);
    remove();
    remove2();
    expect(await series('axon_lease_shards_owned')).toEqual([]);
  });

  it('starts every per-family worker counter at 0, so rate() sees the first increment', async () => {
    initialiseWorkerSeries();
    const acquisitions = await series('axon_lease_acquisitions_total');
    expect(acquisitions.map((s) => `${s.labels.family}/${s.labels.reason}`).sort()).toEqual(['room/free', 'room/move', 'room/takeover', 'user/free', 'user/move', 'user/takeover']);
    expect((await series('axon_shard_moves_total')).map((s) => `${s.labels.family}/${s.labels.direction}`).sort()).toEqual(['room/in', 'room/out', 'user/in', 'user/out']);
    expect((await series('axon_actor_dead_letters_total')).map((s) => s.labels.family).sort()).toEqual(['room', 'user']);
  });

  it('counts applied messages and commits kept in plain numbers on the hot path, added at each scrape, per family', async () => {
    initialiseWorkerSeries();
    const value = async (name: string, family: string) => (await series(name)).find((s) => s.labels.family === family)?.value ?? 0;
    const before = { applied: await value('axon_actor_messages_applied_total', 'room'), commits: await value('axon_actor_commits_total', 'room'), user: await value('axon_actor_messages_applied_total', 'user') };
    // Two runners of one family share its cells; another family's are its own.
    const a = familyCounters('room');
    const b = familyCounters('room');
    a.applied.inc(3);
    b.applied.inc();
    a.commits.inc();
    familyCounters('user').applied.inc(5);
    expect(await value('axon_actor_messages_applied_total', 'room')).toBe(before.applied + 4);
    expect(await value('axon_actor_commits_total', 'room')).toBe(before.commits + 1);
    expect(await value('axon_actor_messages_applied_total', 'user')).toBe(before.user + 5);
    // Read again with nothing new: each increment was added once.
    expect(await value('axon_actor_messages_applied_total', 'room')).toBe(before.applied + 4);
    a.applied.inc(2);
    expect(await registry.metrics()).toMatch(new RegExp(`axon_actor_messages_applied_total\\{family="room"\\} ${before.applied + 6}\\b`));
  });
});

describe('federation queue figures from destination actor states', () => {
  const base: DestinationState = { destination: 'a.example', nextPdu: 1, takenPdu: 0, nextEdu: 1, takenEdu: 0, txnSeq: 0, inflight: null, failures: 0, retryAt: 0, lastTimerAt: 0, prevTimerAt: 0, sentPdus: 0, sentEdus: 0, txns: 0, refused: 0, pduErrors: 0, dropped: 0, droppedEdus: 0 };

  it('counts destinations, those with work waiting, those backing off, and the waiting PDUs and EDUs', () => {
    const now = 1_000_000;
    const states: [string, unknown][] = [
      ['idle.example', { ...base, destination: 'idle.example', nextPdu: 11, takenPdu: 10, nextEdu: 4, takenEdu: 3 }],
      ['busy.example', { ...base, destination: 'busy.example', nextPdu: 21, takenPdu: 10, nextEdu: 3, takenEdu: 0 }],
      ['down.example', { ...base, destination: 'down.example', nextPdu: 6, takenPdu: 5, failures: 3, retryAt: now + 8000, inflight: { txnId: 't', pduFrom: 1, pduTo: 5, eduFrom: 0, eduTo: 0, ts: 1, attempts: 3 } }],
      ['recovered.example', { ...base, destination: 'recovered.example', failures: 2, retryAt: now - 1 }],
      ['presence.example', { ...base, destination: 'presence.example', presence: { '@a:x': {}, '@b:x': {} } }],
      ['not-a-destination', { something: 'else' }],
    ];
    expect(destinationStats(states, now)).toEqual({ destinations: 5, pending: 3, backingOff: 1, pendingPdus: 10, pendingEdus: 4 });
  });

  it('feeds the gauges through a source', async () => {
    const remove = destinationSources.add(() => ({ destinations: 4, pending: 2, backingOff: 1, pendingPdus: 30, pendingEdus: 7 }));
    expect((await series('axon_federation_transaction_queue_pending_pdus'))[0]?.value).toBe(30);
    expect((await series('axon_federation_destinations_backing_off'))[0]?.value).toBe(1);
    remove();
    expect((await series('axon_federation_transaction_queue_pending_pdus'))[0]?.value).toBe(0);
  });
});

describe('the metrics server', () => {
  function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('serves /metrics, then each handler in turn, then 404', async () => {
    const seen: string[] = [];
    const declines: MetricsRouteHandler = (req) => {
      seen.push(`declined ${req.url}`);
      return false;
    };
    const dashboard: MetricsRouteHandler = async (req, res) => {
      if (!req.url?.startsWith('/dashboard')) return false;
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<h1>dashboard</h1>');
      return true;
    };
    const server = await startMetricsServer({ port: 0, host: '127.0.0.1', handlers: [declines, dashboard] });
    try {
      const metrics = await get(server.port, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.type).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(metrics.body).toContain('# TYPE axon_http_server_requests_received_total counter');
      // Node's defaults once the server runs: event-loop lag, GC, process figures.
      expect(metrics.body).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
      expect(metrics.body).toMatch(/^process_cpu_seconds_total \d/m);
      expect(metrics.body).not.toMatch(/^nodejs_active_handles_total/m);
      expect((await get(server.port, '/metrics', 'POST')).status).toBe(405);
      expect(await get(server.port, '/dashboard/')).toMatchObject({ status: 200, body: '<h1>dashboard</h1>' });
      expect((await get(server.port, '/elsewhere')).status).toBe(404);
      expect(seen).toEqual(['declined /dashboard/', 'declined /elsewhere']);
    } finally {
      await server.close();
    }
  });

  it.skipIf(!prometheusInstalled())('exposes text promtool finds nothing wrong with', async () => {
    enableProcessMetrics();
    initialiseWorkerSeries();
    const check = await promtoolCheckMetrics(await registry.metrics());
    expect(check).toEqual({ code: 0, output: '' });
  });
});
