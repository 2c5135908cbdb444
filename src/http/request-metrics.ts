/**
 * HTTP metrics of a Front (src/ops/metrics.ts): requests received, responses by status code and
 * response times, labelled by listener, method and endpoint group. The group comes from the route
 * pattern that matched, never from the raw path, so the number of series is bounded by the routes.
 */
import { HTTP_RESPONSE_TIME_BUCKETS, httpSources, type HttpSlot } from '../ops/metrics';

/** Requests that matched no route (404) or no method of one (405). */
export const UNRECOGNIZED_ENDPOINT = 'unrecognized';
/** CORS preflights (`OPTIONS`), answered before routing. */
export const PREFLIGHT_ENDPOINT = 'cors_preflight';

const KNOWN_METHODS = new Set(['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH']);

/** The method as a label: anything else a client sends is `OTHER` (labels must stay few). */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'OTHER';
}

const VERSION_SEGMENT = /^(?:v\d+|r\d+|unstable)$/;

/**
 * The endpoint group of a route pattern: the API (`client`, `federation`, `key`, `media`, `admin`
 * for `/_synapse/admin`, …) then the first and last fixed path segments after the version, e.g.
 * `/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId` → `client/rooms/send`,
 * `/_matrix/federation/v2/send_join/:roomId/:eventId` → `federation/send_join`,
 * `/_matrix/client/v3/sync` → `client/sync`. Versions (`v3`, `r0`, `unstable`) are dropped, so
 * the same endpoint under several versions is one group; namespaced unstable segments
 * (`org.matrix.simplified_msc3575`) are kept: they are other endpoints.
 */
export function endpointGroup(pattern: string): string {
  const segments = pattern.split('/').filter(Boolean);
  if (segments.length === 0) return 'root';
  let api: string;
  if (segments[0] === '_matrix' || segments[0] === '_synapse') {
    const root = segments.shift()!;
    api = segments.shift() ?? root;
    if (root === '_synapse' && api !== 'admin') api = `synapse_${api}`;
  } else {
    api = segments.shift()!;
  }
  const fixed = segments.filter((s) => !s.startsWith(':') && !s.startsWith('*') && !VERSION_SEGMENT.test(s));
  if (fixed.length === 0) return api;
  const first = fixed[0]!;
  const last = fixed[fixed.length - 1]!;
  return fixed.length === 1 ? `${api}/${first}` : `${api}/${first}/${last}`;
}

/**
 * A front's HTTP figures per (method, endpoint group) as plain numbers (src/ops/metrics.ts reads
 * them when scraped): a request costs two map lookups and a few additions.
 */
export class RequestMetrics {
  private readonly byMethod = new Map<string, Map<string, HttpSlot>>();
  private readonly groups = new Map<string, string>();

  constructor(private readonly listener: string) {
    // Never removed: a closed front's totals stay in the counters (they must not go down).
    const slots = this.slots.bind(this);
    httpSources.add(slots);
  }

  /** The group of a pattern (memoised: patterns are few). */
  group(pattern: string): string {
    let g = this.groups.get(pattern);
    if (g === undefined) {
      g = endpointGroup(pattern);
      this.groups.set(pattern, g);
    }
    return g;
  }

  private *slots(): Iterable<HttpSlot> {
    for (const byEndpoint of this.byMethod.values()) yield* byEndpoint.values();
  }

  private slot(method: string, endpoint: string): HttpSlot {
    let byEndpoint = this.byMethod.get(method);
    if (!byEndpoint) {
      byEndpoint = new Map();
      this.byMethod.set(method, byEndpoint);
    }
    let s = byEndpoint.get(endpoint);
    if (!s) {
      s = { labels: { listener: this.listener, method, endpoint }, received: 0, codes: new Map(), buckets: HTTP_RESPONSE_TIME_BUCKETS.map(() => 0), sum: 0, count: 0 };
      byEndpoint.set(endpoint, s);
    }
    return s;
  }

  received(method: string, endpoint: string): void {
    this.slot(method, endpoint).received++;
  }

  /** The answer went out (or the client left: code `aborted`) `seconds` after the request arrived. */
  answered(method: string, endpoint: string, code: string, seconds: number): void {
    const s = this.slot(method, endpoint);
    s.codes.set(code, (s.codes.get(code) ?? 0) + 1);
    s.sum += seconds;
    s.count++;
    for (let i = 0; i < HTTP_RESPONSE_TIME_BUCKETS.length; i++) {
      if (seconds <= HTTP_RESPONSE_TIME_BUCKETS[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
  }
}
