/**
 * A scripted client session that runs unchanged against any homeserver: a list of steps (method,
 * path template, body, which user), each answer's ids kept under names (`capture`) and substituted
 * into later steps as `{{name}}`. Users are named too: a registration step captures `alice` (the
 * user id) and `alice.token`; a step `as: 'alice'` sends that token.
 */
import type { JsonValue } from './diff';

export type Json = Record<string, any>;

export interface Step {
  /** Unique, used in difference paths and in the allowlist. */
  name: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Under `/_matrix/client/v3`, or whole when it starts with `/_`; `{{name}}` is URL-encoded. */
  path: string;
  /** Query parameters: `{{name}}` substituted, objects sent as JSON (filters). */
  query?: Record<string, string | number | boolean | object>;
  /** Sent as JSON after substitution (strings `{{name}}` anywhere in it). */
  body?: unknown;
  /** Sent as is (malformed JSON). */
  rawBody?: string;
  /** The user whose access token is sent (none: unauthenticated). */
  as?: string;
  /** Names for values of the answer: name → dotted path (`rooms.join.{{room1}}.timeline.prev_batch`). */
  capture?: Record<string, string>;
  /**
   * Repeat the request until this holds (servers that apply some effects after answering — Axon's
   * readers — are polled; Synapse usually holds at once). Gives up after `untilMs` and compares the last answer.
   */
  until?: (body: Json, status: number, ctx: Captures) => boolean;
  untilMs?: number;
  /** Not compared (setup whose answer another step already covers). */
  skipCompare?: boolean;
}

export type Captures = Map<string, string>;

export interface Target {
  label: string;
  baseUrl: string;
  serverName: string;
}

export interface StepResult {
  step: Step;
  status: number;
  body: JsonValue;
}

export const substitute = (s: string, ctx: Captures, encode: (v: string) => string = (v) => v): string =>
  s.replace(/\{\{([^{}]+)\}\}/g, (_, name: string) => {
    const v = ctx.get(name);
    if (v === undefined) throw new Error(`no capture named ${name}`);
    return encode(v);
  });

function substituteDeep(v: unknown, ctx: Captures): unknown {
  if (typeof v === 'string') return substitute(v, ctx);
  if (Array.isArray(v)) return v.map((x) => substituteDeep(x, ctx));
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [substitute(k, ctx), substituteDeep(x, ctx)]));
  }
  return v;
}

/** The value at a dotted path whose segments may hold `{{name}}` (keys with dots: write them as `[m.room.name]`). */
export function pick(body: unknown, path: string, ctx: Captures): unknown {
  const segments = substitute(path, ctx).match(/\[[^\]]*\]|[^.[\]]+/g) ?? [];
  let v: any = body;
  for (const seg of segments) {
    const key = seg.startsWith('[') ? seg.slice(1, -1) : seg;
    if (v === null || typeof v !== 'object') return undefined;
    v = v[Array.isArray(v) ? Number(key) : key];
  }
  return v;
}

function urlFor(t: Target, step: Step, ctx: Captures): string {
  const path = substitute(step.path, ctx, encodeURIComponent);
  const base = path.startsWith('/_') ? `${t.baseUrl}${path}` : `${t.baseUrl}/_matrix/client/v3${path}`;
  if (!step.query) return base;
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(step.query)) {
    qs.set(k, typeof v === 'object' ? JSON.stringify(substituteDeep(v, ctx)) : substitute(String(v), ctx));
  }
  return `${base}${base.includes('?') ? '&' : '?'}${qs.toString()}`;
}

async function send(t: Target, step: Step, ctx: Captures): Promise<{ status: number; body: Json }> {
  const token = step.as === undefined ? undefined : ctx.get(`${step.as}.token`);
  if (step.as !== undefined && token === undefined) throw new Error(`${t.label} ${step.name}: no token for ${step.as}`);
  const body = step.rawBody ?? (step.body === undefined ? undefined : JSON.stringify(substituteDeep(step.body, ctx)));
  const r = await fetch(urlFor(t, step, ctx), {
    method: step.method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    body,
  });
  const text = await r.text();
  let json: Json;
  try {
    json = JSON.parse(text) as Json;
  } catch {
    json = { '(not JSON)': text.slice(0, 200) };
  }
  return { status: r.status, body: json };
}

/** Runs every step against one server, in order; captures are that server's own values. */
export async function runSession(t: Target, steps: Step[], initial: Captures = new Map()): Promise<{ results: StepResult[]; captures: Captures }> {
  const ctx: Captures = new Map(initial);
  const results: StepResult[] = [];
  for (const step of steps) {
    let r = await send(t, step, ctx);
    if (step.until) {
      const deadline = Date.now() + (step.untilMs ?? 20_000);
      while (!step.until(r.body, r.status, ctx) && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 200));
        r = await send(t, step, ctx);
      }
    }
    for (const [name, path] of Object.entries(step.capture ?? {})) {
      const v = pick(r.body, path, ctx);
      if (typeof v !== 'string') throw new Error(`${t.label} ${step.name}: nothing to capture as ${name} at ${path} (${r.status} ${JSON.stringify(r.body).slice(0, 300)})`);
      ctx.set(name, v);
    }
    results.push({ step, status: r.status, body: r.body as JsonValue });
  }
  return { results, captures: ctx };
}
