/**
 * The server's questions to application services (Application Service API): does a user or an
 * alias in your namespace exist (`GET /_matrix/app/v1/users/{userId}`, `/rooms/{alias}`), the
 * third-party network look-ups the client API proxies (`/_matrix/app/v1/thirdparty/*`), and
 * `POST /_matrix/app/v1/ping`. Every request carries `Authorization: Bearer <hs_token>` and has a
 * deadline (`appservices.queryTimeoutMs`); an appservice that fails or is late counts as one that
 * knows nothing, except for `ping`, whose caller wants to know how it failed.
 *
 * Appservice URLs come from the operator's registration files, so they are not checked against
 * the federation IP blocklist: bridges usually run on loopback or a private network.
 *
 * Events are not sent from here: transactions are the per-appservice sender's work.
 */
import type { Logger } from 'pino';
import type { JsonObject, JsonValue } from '../protocol/json';
import type { Appservice, AppserviceRegistry } from './registration';

export type ThirdPartyKind = 'user' | 'location';

/** How a ping failed, as the client API's error codes name it. */
export class PingError extends Error {
  constructor(
    readonly errcode: 'M_CONNECTION_TIMEOUT' | 'M_CONNECTION_FAILED' | 'M_BAD_STATUS',
    message: string,
    readonly status?: number,
    readonly body?: string,
  ) {
    super(message);
    this.name = 'PingError';
  }
}

const APP_PREFIX = '/_matrix/app/v1';

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A third-party user or location as the spec shapes it: the id field, `protocol`, `fields`. */
function isValidThirdPartyResult(r: unknown, idField: 'userid' | 'alias'): r is JsonObject {
  return isObject(r) && typeof r[idField] === 'string' && typeof r.protocol === 'string' && isObject(r.fields);
}

export class AppserviceQueries {
  constructor(
    readonly registry: AppserviceRegistry,
    private readonly opts: { timeoutMs: number; log?: Logger },
  ) {}

  /** One request to an appservice: its status and parsed JSON (null when the body is not JSON). */
  private async call(as: Appservice, method: 'GET' | 'POST', path: string, body?: JsonValue, signal?: AbortSignal): Promise<{ status: number; json: unknown; text: string }> {
    if (as.url === null) throw new Error(`appservice ${as.id} has no url`);
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const res = await fetch(`${as.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${as.hsToken}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
      redirect: 'error',
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: the caller sees null */
    }
    return { status: res.status, json, text };
  }

  /** `call`, with any failure logged and turned into null (queries whose failure means "no"). */
  private async quiet(as: Appservice, what: string, method: 'GET' | 'POST', path: string): Promise<{ status: number; json: unknown } | null> {
    try {
      return await this.call(as, method, path);
    } catch (err) {
      this.opts.log?.warn({ appservice: as.id, err: (err as Error).message, query: what }, 'appservice query failed');
      return null;
    }
  }

  /**
   * Ask the appservices whose namespace holds this (local, unregistered) user whether it exists;
   * an appservice answering 200 has created it (the spec's contract). True when one did. Asked in
   * turn, stopping at the first yes, as Synapse does.
   */
  async queryUser(userId: string): Promise<boolean> {
    for (const as of this.registry.all()) {
      if (as.url === null || !as.isUserInNamespace(userId)) continue;
      const r = await this.quiet(as, 'user', 'GET', `${APP_PREFIX}/users/${encodeURIComponent(userId)}`);
      if (r?.status === 200) return true;
    }
    return false;
  }

  /** The same for a room alias (`/rooms/{alias}`): true when an appservice says it made it. */
  async queryAlias(alias: string): Promise<boolean> {
    for (const as of this.registry.all()) {
      if (as.url === null || !as.isInterestedInAlias(alias)) continue;
      const r = await this.quiet(as, 'alias', 'GET', `${APP_PREFIX}/rooms/${encodeURIComponent(alias)}`);
      if (r?.status === 200) return true;
    }
    return false;
  }

  /**
   * The protocols the appservices bridge (`/thirdparty/protocols`), or one of them: each
   * appservice declaring a protocol is asked for its description; the first answer gives the
   * fields and the `instances` of all answers are put together, each instance with a `network_id`
   * getting `instance_id` = `<appservice id>|<network id>` (what `/publicRooms`'s
   * `third_party_instance_id` names). A protocol no appservice described is left out.
   */
  async protocols(only?: string): Promise<Record<string, JsonObject>> {
    const asked: { protocol: string; as: Appservice }[] = [];
    for (const as of this.registry.all()) {
      if (as.url === null) continue;
      for (const protocol of as.protocols) if (only === undefined || protocol === only) asked.push({ protocol, as });
    }
    const answers = await Promise.all(
      asked.map(async ({ protocol, as }) => {
        const r = await this.quiet(as, 'protocol', 'GET', `${APP_PREFIX}/thirdparty/protocol/${encodeURIComponent(protocol)}`);
        if (!r || r.status !== 200 || !isObject(r.json) || !Array.isArray(r.json.instances)) {
          if (r) this.opts.log?.warn({ appservice: as.id, protocol, status: r.status }, 'appservice: no valid protocol description');
          return null;
        }
        const info = r.json;
        const instances = (info.instances as JsonValue[]).map((inst) => {
          if (!isObject(inst) || typeof inst.network_id !== 'string') return inst;
          return { ...inst, instance_id: `${as.id}|${inst.network_id}` };
        });
        return { protocol, info: { ...info, instances } as JsonObject };
      }),
    );
    const out: Record<string, JsonObject> = {};
    for (const a of answers) {
      if (!a) continue;
      const first = out[a.protocol];
      if (!first) out[a.protocol] = a.info;
      else out[a.protocol] = { ...first, instances: [...(first.instances as JsonValue[]), ...(a.info.instances as JsonValue[])] };
    }
    return out;
  }

  /**
   * Third-party users or locations matching `fields` in one protocol (`/thirdparty/{kind}/{protocol}`):
   * every appservice declaring the protocol is asked at once, and the valid entries of every answer
   * are put together (an appservice that fails adds nothing).
   */
  async thirdPartyLookup(kind: ThirdPartyKind, protocol: string, fields: Record<string, string[]>): Promise<JsonObject[]> {
    const query = new URLSearchParams();
    for (const [k, vs] of Object.entries(fields)) for (const v of vs) query.append(k, v);
    const qs = query.size ? `?${query}` : '';
    const services = this.registry.withProtocol(protocol).filter((as) => as.url !== null);
    return this.gather(services, kind, `${APP_PREFIX}/thirdparty/${kind}/${encodeURIComponent(protocol)}${qs}`);
  }

  /**
   * The reverse look-ups: the third-party identities of a Matrix user (`?userid=`) or the
   * third-party locations bridged to an alias (`?alias=`). Asked of the appservices whose user or
   * alias namespace holds it — the only ones that can know. (Synapse asks appservices declaring a
   * protocol named by the request, and these requests name none, so it answers an empty list.)
   */
  async thirdPartyReverse(kind: ThirdPartyKind, id: string): Promise<JsonObject[]> {
    const services = this.registry.all().filter((as) => as.url !== null && (kind === 'user' ? as.isUserInNamespace(id) : as.isInterestedInAlias(id)));
    const param = kind === 'user' ? 'userid' : 'alias';
    return this.gather(services, kind, `${APP_PREFIX}/thirdparty/${kind}?${new URLSearchParams({ [param]: id })}`);
  }

  private async gather(services: Appservice[], kind: ThirdPartyKind, path: string): Promise<JsonObject[]> {
    const idField = kind === 'user' ? 'userid' : 'alias';
    const lists = await Promise.all(
      services.map(async (as) => {
        const r = await this.quiet(as, `thirdparty ${kind}`, 'GET', path);
        if (!r || r.status !== 200) return [];
        if (!Array.isArray(r.json)) {
          this.opts.log?.warn({ appservice: as.id, kind }, 'appservice: third-party look-up answer is not a list');
          return [];
        }
        return r.json.filter((x): x is JsonObject => isValidThirdPartyResult(x, idField));
      }),
    );
    return lists.flat();
  }

  /**
   * `POST /_matrix/app/v1/ping`: resolves with the round trip in ms, or throws a PingError saying
   * how it failed (late, unreachable, or an answer other than 200).
   */
  async ping(as: Appservice, transactionId?: string): Promise<number> {
    const started = performance.now();
    let r: { status: number; text: string };
    try {
      r = await this.call(as, 'POST', `${APP_PREFIX}/ping`, transactionId !== undefined ? { transaction_id: transactionId } : {});
    } catch (err) {
      const e = err as Error;
      if (e.name === 'TimeoutError' || e.name === 'AbortError') throw new PingError('M_CONNECTION_TIMEOUT', `The appservice did not answer within ${this.opts.timeoutMs} ms`);
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new PingError('M_CONNECTION_FAILED', `Connection to the appservice failed${cause?.code ? ` (${cause.code})` : ''}`);
    }
    if (r.status !== 200) throw new PingError('M_BAD_STATUS', `The appservice answered HTTP ${r.status}`, r.status, r.text);
    return Math.round(performance.now() - started);
  }
}
