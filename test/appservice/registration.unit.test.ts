/** Appservice registrations: the checks at start, one line per problem, and namespace matching as Synapse does it. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Appservice, compileNamespaceRegex, crossCheckRegistrations, parseRegistration, type AppserviceRegistration } from '../../src/protocol/appservice';
import { AppserviceConfigError, AppserviceRegistry, checkAppserviceFiles } from '../../src/appservice/registration';
import { ConfigError, loadConfig } from '../../cluster.config';

const HEISENBRIDGE = `id: heisenbridge
url: http://127.0.0.1:9898
as_token: as-secret-1
hs_token: hs-secret-1
rate_limited: false
sender_localpart: heisenbridge
namespaces:
  users:
  - regex: '@irc_.*'
    exclusive: true
  aliases: []
  rooms: []
protocols:
  - irc
receive_ephemeral: true
`;

function reg(doc: Record<string, unknown>, source = 'test.yaml'): AppserviceRegistration {
  const { registration, problems } = parseRegistration(doc, source);
  expect(problems).toEqual([]);
  return registration!;
}

const base = { id: 'a', url: null, as_token: 'at', hs_token: 'ht', sender_localpart: 'abot', namespaces: {} };

describe('parseRegistration', () => {
  it('reads every field of a registration', () => {
    const r = reg({
      ...base,
      url: 'http://localhost:9000/',
      rate_limited: false,
      protocols: ['irc', 'irc'],
      'de.sorunome.msc2409.push_ephemeral': true,
      'org.matrix.msc2409.push_to_device': true,
      namespaces: { users: [{ exclusive: true, regex: '@a_.*' }], aliases: [{ exclusive: false, regex: '#a_.*' }], rooms: [{ exclusive: false, regex: '!x:.*' }] },
    });
    expect(r.url).toBe('http://localhost:9000');
    expect(r.rateLimited).toBe(false);
    expect(r.protocols).toEqual(['irc']);
    expect(r.receiveEphemeral).toBe(true);
    expect(r.pushToDevice).toBe(true);
    expect(r.namespaces.users.map((n) => [n.source, n.exclusive])).toEqual([['@a_.*', true]]);
  });

  it('defaults: rate limited, no ephemeral, url null allowed', () => {
    const r = reg(base);
    expect(r.url).toBeNull();
    expect(r.rateLimited).toBe(true);
    expect(r.receiveEphemeral).toBe(false);
    expect(r.pushToDevice).toBe(false);
  });

  it('reports each problem on its own line, naming the file and field', () => {
    const { registration, problems } = parseRegistration(
      { id: 'x|y', as_token: '', hs_token: 7, sender_localpart: 'bad name', namespaces: { users: [{ regex: '(' , exclusive: true }, { regex: '@ok' }], rooms: 'nope' }, rate_limited: 'no', protocols: [1] },
      'bridge.yaml',
    );
    expect(registration).toBeUndefined();
    expect(problems).toEqual([
      'bridge.yaml: as_token: required, a non-empty string',
      'bridge.yaml: hs_token: required, a non-empty string',
      'bridge.yaml: id: "x|y" must not contain "|"',
      'bridge.yaml: url: required (an http(s) URL, or null for an appservice that receives no events)',
      'bridge.yaml: sender_localpart: "bad name" has characters a user id or URL cannot carry as they are',
      expect.stringMatching(/^bridge\.yaml: namespaces\.users\[0\]\.regex: "\(" is not a valid regex/),
      'bridge.yaml: namespaces.users[1].exclusive: required, true or false',
      'bridge.yaml: namespaces.rooms: must be a list of {exclusive, regex}',
      'bridge.yaml: rate_limited: must be true or false',
      'bridge.yaml: protocols: must be a list of protocol names',
    ]);
  });

  it('refuses a missing namespaces mapping and a url that is no URL', () => {
    const { problems } = parseRegistration({ ...base, url: 'localhost:9000', namespaces: undefined }, 'f');
    expect(problems).toEqual(['f: url: must be an http(s) URL or null (got "localhost:9000")', 'f: namespaces: required, a mapping with users, aliases and/or rooms lists']);
  });
});

describe('namespace matching', () => {
  it('is anchored at the start only, like Python re.match', () => {
    const re = compileNamespaceRegex('@irc_.*');
    expect(re.test('@irc_bob:example.org')).toBe(true);
    expect(re.test('@xirc_bob:example.org')).toBe(false);
    // Not anchored at the end: a prefix regex claims every server's users.
    expect(compileNamespaceRegex('@irc_bob').test('@irc_bob2:example.org')).toBe(true);
    expect(compileNamespaceRegex('@irc_bob:example\\.org$').test('@irc_bob:example.org.evil')).toBe(false);
    // An alternation is anchored as a whole.
    expect(compileNamespaceRegex('@a|@b').test('x@b')).toBe(false);
  });

  it('translates Python-only syntax', () => {
    expect(compileNamespaceRegex('@(?P<net>[a-z]+)_(?P=net):x\\Z').test('@irc_irc:x')).toBe(true);
    expect(compileNamespaceRegex('\\A@y').test('@y:z')).toBe(true);
  });

  it('answers interest and exclusivity from the first matching namespace', () => {
    const as = new Appservice(reg({ ...base, namespaces: { users: [{ exclusive: false, regex: '@a_shared.*' }, { exclusive: true, regex: '@a_.*' }], aliases: [{ exclusive: true, regex: '#a_.*' }], rooms: [{ exclusive: false, regex: '!r' }] } }), 'hs.test');
    expect(as.senderUserId).toBe('@abot:hs.test');
    expect(as.isInterestedInUser('@abot:hs.test')).toBe(true);
    expect(as.isUserInNamespace('@abot:hs.test')).toBe(false);
    expect(as.isInterestedInUser('@a_x:hs.test')).toBe(true);
    expect(as.isExclusiveUser('@a_x:hs.test')).toBe(true);
    // Synapse stops at the first match: the non-exclusive one.
    expect(as.isExclusiveUser('@a_shared1:hs.test')).toBe(false);
    expect(as.isInterestedInUser('@b:hs.test')).toBe(false);
    expect(as.isInterestedInAlias('#a_1:hs.test')).toBe(true);
    expect(as.isExclusiveAlias('#a_1:hs.test')).toBe(true);
    expect(as.isInterestedInRoom('!r1:hs.test')).toBe(true);
    expect(as.isExclusiveRoom('!r1:hs.test')).toBe(false);
  });
});

describe('crossCheckRegistrations', () => {
  it('finds reused ids and tokens, and detectable exclusive overlaps', () => {
    const a = reg({ ...base, namespaces: { users: [{ exclusive: true, regex: '@x_.*' }] } }, 'a.yaml');
    const b = reg({ ...base, id: 'a', as_token: 'at', hs_token: 'ht2', sender_localpart: 'x_bot', namespaces: { users: [{ exclusive: false, regex: '@x_.*' }] } }, 'b.yaml');
    const c = reg({ ...base, id: 'c', as_token: 'ct', hs_token: 'ct', sender_localpart: 'cbot' }, 'c.yaml');
    expect(crossCheckRegistrations([a, b, c], 'hs')).toEqual([
      'b.yaml: id is already used by appservice "a" (a.yaml)',
      'b.yaml: as_token is already used by appservice "a" (a.yaml)',
      'c.yaml: as_token and hs_token must differ (the appservice would accept its own token as the server\'s)',
      'b.yaml: namespaces.users regex "@x_.*" overlaps the exclusive namespace of appservice "a" (a.yaml)',
      'b.yaml: the sender @x_bot:hs is inside the exclusive user namespace of appservice "a" (a.yaml)',
    ]);
  });

  it('accepts independent registrations', () => {
    const a = reg({ ...base, namespaces: { users: [{ exclusive: true, regex: '@x_.*' }] } }, 'a.yaml');
    const b = reg({ ...base, id: 'b', as_token: 'bt', hs_token: 'bh', sender_localpart: 'bbot', namespaces: { users: [{ exclusive: true, regex: '@y_.*' }] } }, 'b.yaml');
    expect(crossCheckRegistrations([a, b], 'hs')).toEqual([]);
  });
});

describe('registry and config files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'axon-as-'));
  const good = join(dir, 'heisenbridge.yaml');
  writeFileSync(good, HEISENBRIDGE);

  it('loads a Heisenbridge registration and finds it by token, id and interest', () => {
    const registry = AppserviceRegistry.load([good], 'hs.test');
    expect(registry.all().map((as) => as.id)).toEqual(['heisenbridge']);
    const as = registry.findByAsToken('as-secret-1')!;
    expect(as.id).toBe('heisenbridge');
    expect(registry.findByAsToken('hs-secret-1')).toBeUndefined();
    expect(registry.findById('heisenbridge')).toBe(as);
    expect(registry.interestedInUser('@irc_bob:hs.test')).toEqual([as]);
    expect(registry.withProtocol('irc')).toEqual([as]);
    expect(registry.exclusiveUserOwner('@irc_bob:hs.test')).toBe(as);
    expect(registry.exclusiveUserOwner('@irc_bob:hs.test', as)).toBeUndefined();
    expect(registry.exclusiveUserOwner('@heisenbridge:hs.test')).toBe(as);
  });

  it('reports unreadable files, bad YAML and duplicate keys', () => {
    const yamlBad = join(dir, 'bad.yaml');
    writeFileSync(yamlBad, 'id: [unclosed\n');
    const dup = join(dir, 'dup.yaml');
    writeFileSync(dup, `${HEISENBRIDGE}id: again\n`);
    const problems = checkAppserviceFiles([join(dir, 'missing.yaml'), yamlBad, dup], 'hs.test');
    expect(problems).toHaveLength(3);
    expect(problems[0]).toBe(`${join(dir, 'missing.yaml')}: cannot read the appservice registration (ENOENT)`);
    expect(problems[1]).toMatch(/bad\.yaml: not valid YAML/);
    expect(problems[2]).toMatch(/dup\.yaml: not valid YAML \(Map keys must be unique/);
    expect(() => AppserviceRegistry.load([good, good], 'hs.test')).toThrow(AppserviceConfigError);
  });

  it('AXON_APPSERVICE_CONFIG_FILES is read and checked by loadConfig', () => {
    const cfg = loadConfig({ AXON_CONFIG: undefined, AXON_APPSERVICE_CONFIG_FILES: `${good}` }, dir);
    expect(cfg.appservices.configFiles).toEqual([good]);
    try {
      loadConfig({ AXON_APPSERVICE_CONFIG_FILES: `${good}, ${good}` }, dir);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).problems).toEqual([
        `appservices.configFiles: ${good}: id is already used by appservice "heisenbridge" (${good})`,
        `appservices.configFiles: ${good}: as_token is already used by appservice "heisenbridge" (${good})`,
        `appservices.configFiles: ${good}: hs_token is already used by appservice "heisenbridge" (${good})`,
        `appservices.configFiles: ${good}: sender_localpart is already used by appservice "heisenbridge" (${good})`,
        `appservices.configFiles: ${good}: namespaces.users regex "@irc_.*" overlaps the exclusive namespace of appservice "heisenbridge" (${good})`,
      ]);
    }
  });
});
