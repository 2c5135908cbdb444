/**
 * Application service registrations (the spec's "Registration" section of the Application Service
 * API, in the YAML format Synapse reads from `app_service_config_files`): checking a parsed
 * registration document, and the namespace matching every part of the server asks about.
 *
 * Namespace regexes come from the operator's files (trusted, not from clients). They are matched
 * as Synapse matches them — Python's `re.match`, anchored at the start of the string only — so
 * `@irc_.*` matches `@irc_bob:example.org` and `irc_` does not match `@irc_bob:…`; a regex that
 * wants the whole id must end with `$` itself (as `@irc_.*:example\.org$`). Python-only syntax
 * seen in real registrations is translated (`(?P<name>…)`, `(?P=name)`, `\A`, `\Z`); anything else
 * JavaScript cannot compile is reported as a problem at start.
 *
 * Pure: no I/O (the files are read by src/appservice/registration.ts).
 */

export type NamespaceKind = 'users' | 'aliases' | 'rooms';
export const NAMESPACE_KINDS: readonly NamespaceKind[] = ['users', 'aliases', 'rooms'];

export interface Namespace {
  exclusive: boolean;
  /** The regex as written in the registration (for messages and comparisons). */
  source: string;
  /** Compiled, anchored at the start (Python's `re.match`). */
  regex: RegExp;
}

/** A registration as the file says it, checked. */
export interface AppserviceRegistration {
  id: string;
  /** Where events and queries go; null: this appservice receives neither (it only uses the C-S API). */
  url: string | null;
  asToken: string;
  hsToken: string;
  senderLocalpart: string;
  namespaces: Record<NamespaceKind, Namespace[]>;
  /** Whether the appservice's users are rate limited (default true; the sender never is, as Synapse). */
  rateLimited: boolean;
  /** Third-party protocols it bridges (`/thirdparty/*`). */
  protocols: string[];
  /** Typing, receipts and presence in transactions (`receive_ephemeral`, or MSC2409's unstable name). */
  receiveEphemeral: boolean;
  /** To-device messages in transactions (`push_to_device`, or MSC2409's unstable name). */
  pushToDevice: boolean;
  /** The file it came from (for messages). */
  source: string;
}

/** Python `re` syntax that JavaScript spells differently, translated; the rest is left as written. */
export function pythonRegexToJs(source: string): string {
  return source
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?P=([A-Za-z_][A-Za-z0-9_]*)\)/g, '\\k<$1>')
    .replace(/\\A/g, '^')
    .replace(/\\Z/g, '$');
}

/** A namespace regex compiled as Synapse applies it: anchored at the start only. Throws on bad syntax. */
export function compileNamespaceRegex(source: string): RegExp {
  return new RegExp(`^(?:${pythonRegexToJs(source)})`);
}

const SENDER_LOCALPART = /^[A-Za-z0-9._~!$&'()*+,;=:@/-]+$/;
const USER_LOCALPART = /^[\x21-\x39\x3b-\x7e]+$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Check one parsed registration document (`source` names the file in messages). Every problem is
 * one line; the registration is returned only when there are none.
 */
export function parseRegistration(doc: unknown, source: string): { registration?: AppserviceRegistration; problems: string[] } {
  const problems: string[] = [];
  const bad = (msg: string) => problems.push(`${source}: ${msg}`);
  if (!isObject(doc)) {
    bad('must be a YAML mapping (id, url, as_token, hs_token, sender_localpart, namespaces)');
    return { problems };
  }
  for (const field of ['id', 'as_token', 'hs_token', 'sender_localpart'] as const) {
    if (typeof doc[field] !== 'string' || doc[field] === '') bad(`${field}: required, a non-empty string`);
  }
  if (typeof doc.id === 'string' && doc.id.includes('|')) bad(`id: ${JSON.stringify(doc.id)} must not contain "|"`);
  // `url` must be there: a string, or an explicit null (an appservice that receives nothing) —
  // as Synapse, so a forgotten url does not silently turn pushes off.
  if (!('url' in doc)) bad('url: required (an http(s) URL, or null for an appservice that receives no events)');
  else if (doc.url !== null) {
    if (typeof doc.url !== 'string' || !/^https?:\/\/[^/\s]+/.test(doc.url)) bad(`url: must be an http(s) URL or null (got ${JSON.stringify(doc.url)})`);
  }
  const sender = doc.sender_localpart;
  if (typeof sender === 'string' && sender !== '' && (!SENDER_LOCALPART.test(sender) || !USER_LOCALPART.test(sender))) {
    bad(`sender_localpart: ${JSON.stringify(sender)} has characters a user id or URL cannot carry as they are`);
  }
  const namespaces: Record<NamespaceKind, Namespace[]> = { users: [], aliases: [], rooms: [] };
  if (!isObject(doc.namespaces)) bad('namespaces: required, a mapping with users, aliases and/or rooms lists');
  else {
    for (const kind of NAMESPACE_KINDS) {
      const list = doc.namespaces[kind];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) {
        bad(`namespaces.${kind}: must be a list of {exclusive, regex}`);
        continue;
      }
      list.forEach((entry, i) => {
        const at = `namespaces.${kind}[${i}]`;
        if (!isObject(entry)) return bad(`${at}: must be a mapping with exclusive and regex`);
        if (typeof entry.exclusive !== 'boolean') bad(`${at}.exclusive: required, true or false`);
        if (typeof entry.regex !== 'string') return bad(`${at}.regex: required, a string`);
        try {
          namespaces[kind].push({ exclusive: entry.exclusive === true, source: entry.regex, regex: compileNamespaceRegex(entry.regex) });
        } catch (e) {
          bad(`${at}.regex: ${JSON.stringify(entry.regex)} is not a valid regex (${(e as Error).message})`);
        }
      });
    }
  }
  const flag = (names: string[], what: string): boolean => {
    let out = false;
    for (const name of names) {
      const v = doc[name];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'boolean') bad(`${name}: must be true or false (${what})`);
      else out ||= v;
    }
    return out;
  };
  const receiveEphemeral = flag(['receive_ephemeral', 'de.sorunome.msc2409.push_ephemeral'], 'typing, receipts and presence in transactions');
  const pushToDevice = flag(['push_to_device', 'org.matrix.msc2409.push_to_device', 'de.sorunome.msc2409.push_to_device'], 'to-device messages in transactions');
  // As Synapse: anything but a boolean leaves rate limiting on.
  const rateLimited = doc.rate_limited !== false;
  if (doc.rate_limited !== undefined && doc.rate_limited !== null && typeof doc.rate_limited !== 'boolean') bad('rate_limited: must be true or false');
  const protocols: string[] = [];
  if (doc.protocols !== undefined && doc.protocols !== null) {
    if (!Array.isArray(doc.protocols) || !doc.protocols.every((p) => typeof p === 'string' && p !== '')) bad('protocols: must be a list of protocol names');
    else protocols.push(...new Set(doc.protocols as string[]));
  }
  if (problems.length) return { problems };
  return {
    problems,
    registration: {
      id: doc.id as string,
      url: typeof doc.url === 'string' ? doc.url.replace(/\/+$/, '') : null,
      asToken: doc.as_token as string,
      hsToken: doc.hs_token as string,
      senderLocalpart: sender as string,
      namespaces,
      rateLimited,
      protocols,
      receiveEphemeral,
      pushToDevice,
      source,
    },
  };
}

/** What the server asks of one appservice: whose users, aliases and rooms it claims. */
export class Appservice {
  readonly senderUserId: string;

  constructor(
    readonly registration: AppserviceRegistration,
    readonly serverName: string,
  ) {
    this.senderUserId = `@${registration.senderLocalpart}:${serverName}`;
  }

  get id(): string {
    return this.registration.id;
  }
  get url(): string | null {
    return this.registration.url;
  }
  get asToken(): string {
    return this.registration.asToken;
  }
  get hsToken(): string {
    return this.registration.hsToken;
  }
  get rateLimited(): boolean {
    return this.registration.rateLimited;
  }
  get protocols(): readonly string[] {
    return this.registration.protocols;
  }
  get receiveEphemeral(): boolean {
    return this.registration.receiveEphemeral;
  }
  get pushToDevice(): boolean {
    return this.registration.pushToDevice;
  }

  /** The first namespace of `kind` whose regex matches `value` (Synapse's order: as listed). */
  matching(kind: NamespaceKind, value: string): Namespace | undefined {
    return this.registration.namespaces[kind].find((ns) => ns.regex.test(value));
  }

  /** In the user namespace (the sender is not, unless a regex says so). */
  isUserInNamespace(userId: string): boolean {
    return this.matching('users', userId) !== undefined;
  }
  /** The sender, or a user in the namespace: users whose events it gets and whom it may act as. */
  isInterestedInUser(userId: string): boolean {
    return userId === this.senderUserId || this.isUserInNamespace(userId);
  }
  isInterestedInAlias(alias: string): boolean {
    return this.matching('aliases', alias) !== undefined;
  }
  /** The room id is in the room namespace (interest through aliases or members is the caller's to add). */
  isInterestedInRoom(roomId: string): boolean {
    return this.matching('rooms', roomId) !== undefined;
  }
  /** Whether the first matching namespace is exclusive (Synapse looks at the first match only). */
  isExclusiveUser(userId: string): boolean {
    return this.matching('users', userId)?.exclusive === true;
  }
  isExclusiveAlias(alias: string): boolean {
    return this.matching('aliases', alias)?.exclusive === true;
  }
  isExclusiveRoom(roomId: string): boolean {
    return this.matching('rooms', roomId)?.exclusive === true;
  }
}

/**
 * Problems between registrations, one line each: ids and tokens used twice (a shared as_token
 * would make requests ambiguous; a shared hs_token would let one appservice pass for the server
 * to another), and exclusive namespaces that overlap where that can be told without solving regex
 * intersection: the same regex claimed by two appservices with one of them exclusive, or one
 * appservice's sender inside another's exclusive user namespace.
 */
export function crossCheckRegistrations(list: readonly AppserviceRegistration[], serverName: string): string[] {
  const problems: string[] = [];
  const seen = (pick: (r: AppserviceRegistration) => string, what: string) => {
    const first = new Map<string, AppserviceRegistration>();
    for (const r of list) {
      const v = pick(r);
      const prev = first.get(v);
      if (prev) problems.push(`${r.source}: ${what} is already used by appservice ${JSON.stringify(prev.id)} (${prev.source})`);
      else first.set(v, r);
    }
  };
  seen((r) => r.id, 'id');
  seen((r) => r.asToken, 'as_token');
  seen((r) => r.hsToken, 'hs_token');
  seen((r) => r.senderLocalpart, 'sender_localpart');
  for (const r of list) {
    if (r.asToken === r.hsToken) problems.push(`${r.source}: as_token and hs_token must differ (the appservice would accept its own token as the server's)`);
    if (list.some((o) => o !== r && o.asToken === r.hsToken)) problems.push(`${r.source}: hs_token is another appservice's as_token`);
  }
  const services = list.map((r) => new Appservice(r, serverName));
  for (let i = 0; i < services.length; i++) {
    for (let j = i + 1; j < services.length; j++) {
      const a = services[i]!;
      const b = services[j]!;
      for (const kind of NAMESPACE_KINDS) {
        for (const na of a.registration.namespaces[kind]) {
          for (const nb of b.registration.namespaces[kind]) {
            if (na.source === nb.source && (na.exclusive || nb.exclusive)) {
              problems.push(`${b.registration.source}: namespaces.${kind} regex ${JSON.stringify(nb.source)} overlaps the exclusive namespace of appservice ${JSON.stringify(a.id)} (${a.registration.source})`);
            }
          }
        }
      }
      for (const [x, y] of [[a, b], [b, a]] as const) {
        if (y.isExclusiveUser(x.senderUserId)) {
          problems.push(`${x.registration.source}: the sender ${x.senderUserId} is inside the exclusive user namespace of appservice ${JSON.stringify(y.id)} (${y.registration.source})`);
        }
      }
    }
  }
  return problems;
}
