/**
 * The application services this server knows: registration files (Synapse's format, listed in
 * `appservices.configFiles` / `AXON_APPSERVICE_CONFIG_FILES`) read and checked at start, and the
 * look-ups every part of the server makes — which appservice an `as_token` belongs to, which
 * appservices claim a user, alias or room, and who else may use an exclusive namespace.
 *
 * The checking itself is pure (src/protocol/appservice.ts); this module reads the files. It does
 * not import the config module (cluster.config.ts calls `checkAppserviceFiles` to report
 * problems at start, and a cycle would follow).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Appservice, crossCheckRegistrations, parseRegistration, type AppserviceRegistration } from '../protocol/appservice';

export { Appservice } from '../protocol/appservice';

/**
 * The YAML parser, loaded when there is a file to read: most servers have no appservice, and
 * `yaml` costs a process ~3.7 MB PSS (README, "Memory"). `require` (its CommonJS build) keeps the
 * reading synchronous, as the config check at start needs.
 */
function parseYaml(text: string, options: { uniqueKeys: boolean }): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text, options);
}
export type { AppserviceRegistration, Namespace, NamespaceKind } from '../protocol/appservice';

/** Read and check registration files: the registrations, and every problem one line each. */
export function readAppserviceFiles(files: readonly string[]): { registrations: AppserviceRegistration[]; problems: string[] } {
  const registrations: AppserviceRegistration[] = [];
  const problems: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      problems.push(`${file}: cannot read the appservice registration (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      continue;
    }
    let doc: unknown;
    try {
      // YAML 1.1-style booleans and the like are what Synapse (PyYAML) reads; the files bridges
      // generate use plain true/false, which both versions agree on.
      doc = parseYaml(text, { uniqueKeys: true });
    } catch (e) {
      problems.push(`${file}: not valid YAML (${(e as Error).message.split('\n')[0]})`);
      continue;
    }
    const parsed = parseRegistration(doc, file);
    problems.push(...parsed.problems);
    if (parsed.registration) registrations.push(parsed.registration);
  }
  return { registrations, problems };
}

/** Problems with the configured registration files (for the config check at start). */
export function checkAppserviceFiles(files: readonly string[], serverName: string): string[] {
  const { registrations, problems } = readAppserviceFiles(files);
  return [...problems, ...crossCheckRegistrations(registrations, serverName)];
}

export class AppserviceConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid appservice registrations:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'AppserviceConfigError';
  }
}

/** The registered appservices, with the look-ups the server needs. Immutable once built. */
export class AppserviceRegistry {
  private readonly byToken = new Map<string, Appservice>();
  private readonly byId = new Map<string, Appservice>();
  private readonly bySender = new Map<string, Appservice>();

  constructor(registrations: readonly AppserviceRegistration[], readonly serverName: string) {
    const problems = crossCheckRegistrations(registrations, serverName);
    if (problems.length) throw new AppserviceConfigError(problems);
    for (const r of registrations) {
      const as = new Appservice(r, serverName);
      this.byToken.set(r.asToken, as);
      this.byId.set(r.id, as);
      this.bySender.set(as.senderUserId, as);
    }
  }

  /** Read the files; throws AppserviceConfigError listing every problem. */
  static load(files: readonly string[], serverName: string): AppserviceRegistry {
    const { registrations, problems } = readAppserviceFiles(files);
    if (problems.length) throw new AppserviceConfigError(problems);
    return new AppserviceRegistry(registrations, serverName);
  }

  static empty(serverName: string): AppserviceRegistry {
    return new AppserviceRegistry([], serverName);
  }

  all(): Appservice[] {
    return [...this.byId.values()];
  }
  get size(): number {
    return this.byId.size;
  }
  findByAsToken(token: string): Appservice | undefined {
    return this.byToken.get(token);
  }
  findById(id: string): Appservice | undefined {
    return this.byId.get(id);
  }
  /** The appservice whose sender this user is. */
  findBySender(userId: string): Appservice | undefined {
    return this.bySender.get(userId);
  }

  /** Appservices interested in a user (its sender or in its user namespace). */
  interestedInUser(userId: string): Appservice[] {
    return this.all().filter((as) => as.isInterestedInUser(userId));
  }
  interestedInAlias(alias: string): Appservice[] {
    return this.all().filter((as) => as.isInterestedInAlias(alias));
  }
  /** Appservices declaring a third-party protocol. */
  withProtocol(protocol: string): Appservice[] {
    return this.all().filter((as) => as.protocols.includes(protocol));
  }

  /**
   * The appservice holding `userId` in an exclusive namespace, unless that is `requester` itself:
   * nobody else may register the user (M_EXCLUSIVE).
   */
  exclusiveUserOwner(userId: string, requester?: Appservice): Appservice | undefined {
    return this.all().find((as) => as !== requester && (as.isExclusiveUser(userId) || as.senderUserId === userId));
  }
  exclusiveAliasOwner(alias: string, requester?: Appservice): Appservice | undefined {
    return this.all().find((as) => as !== requester && as.isExclusiveAlias(alias));
  }
}
