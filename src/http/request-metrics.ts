/**
 * HTTP metrics of a Front (src/ops/metrics.ts): requests received, responses by status code and
 * response times, labelled by listener, method and endpoint group. The group comes from the route
 * pattern that matched, never from the raw path, so the number of series is bounded by the routes.
 */
import { httpRequestsReceived, httpResponses, httpResponseTime } from '../ops/metrics';
import type { Counter, Histogram } from 'prom-client';

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

interface Children {
  received: Counter.Internal;
  time: Histogram.Internal<'listener' | 'method' | 'endpoint'>;
  responses: Map<string, Counter.Internal>;
}

/** Bound label children per (method, endpoint group), so a request costs map lookups, not label hashing. */
export class RequestMetrics {
  private readonly children = new Map<string, Children>();
  private readonly groups = new Map<string, string>();

  constructor(private readonly listener: string) {}

  /** The group of a pattern (memoised: patterns are few). */
  group(pattern: string): string {
    let g = this.groups.get(pattern);
    if (g === undefined) {
      g = endpointGroup(pattern);
      this.groups.set(pattern, g);
    }
    return g;
  }

  private of(method: string, endpoint: string): Children {
    const key = `${method} ${endpoint}`;
    let c = this.children.get(key);
    if (!c) {
      const labels = { listener: this.listener, method, endpoint };
      c = { received: httpRequestsReceived.labels(labels), time: httpResponseTime.labels(labels), responses: new Map() };
      this.children.set(key, c);
    }
    return c;
  }

  received(method: string, endpoint: string): void {
    this.of(method, endpoint).received.inc();
  }

  /** The answer went out (or the client left: code `aborted`) `seconds` after the request arrived. */
  answered(method: string, endpoint: string, code: string, seconds: number): void {
    const c = this.of(method, endpoint);
    let r = c.responses.get(code);
    if (!r) {
      r = httpResponses.labels({ listener: this.listener, method, endpoint, code });
      c.responses.set(code, r);
    }
    r.inc();
    c.time.observe(seconds);
  }
}
