import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, isLoopbackHost, loadConfig, registrationOpen } from '../cluster.config';

function problems(env: Record<string, string>, cwd = mkdtempSync(join(tmpdir(), 'axon-cfg-'))): string[] {
  try {
    loadConfig(env, cwd);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe('cluster.config', () => {
  it('has a working dev default: localhost:8008, managed Redis, data under the project', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'axon-cfg-'));
    const c = loadConfig({}, cwd);
    expect(c.clientPort).toBe(8008);
    expect(c.bindHost).toBe('127.0.0.1');
    expect(c.redis.mode).toBe('managed');
    expect(c.dataDir).toBe(join(cwd, 'data'));
    expect(c.signingKeyPath).toBe(join(cwd, 'data', 'localhost.signing.key'));
    expect(c.shards).toEqual({ rooms: 1024, users: 1024 });
    expect(c.defaultRoomVersion).toBe('12');
  });

  it('takes environment overrides', () => {
    const c = loadConfig({ AXON_SERVER_NAME: 'example.org:8448', AXON_PORT: '9000', AXON_ROOM_SHARDS: '64', AXON_REDIS_MODE: 'cluster', AXON_REDIS_CLUSTER_NODES: '127.0.0.1:7000, 127.0.0.1:7001' }, mkdtempSync(join(tmpdir(), 'axon-cfg-')));
    expect(c.serverName).toBe('example.org:8448');
    expect(c.clientPort).toBe(9000);
    expect(c.shards.rooms).toBe(64);
    expect(c.redis.clusterNodes).toEqual(['127.0.0.1:7000', '127.0.0.1:7001']);
  });

  it('reads a JSON config file and rejects unknown settings', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'axon-cfg-'));
    writeFileSync(join(cwd, 'axon.config.json'), JSON.stringify({ serverName: 'file.example', lease: { ttlMs: 8000 }, bogus: 1 }));
    expect(problems({}, cwd)).toEqual([`${join(cwd, 'axon.config.json')}: unknown setting bogus`]);
    writeFileSync(join(cwd, 'axon.config.json'), JSON.stringify({ serverName: 'file.example', lease: { ttlMs: 8000 } }));
    const c = loadConfig({}, cwd);
    expect(c.serverName).toBe('file.example');
    expect(c.lease).toEqual({ ttlMs: 8000, renewMs: 1000 });
  });

  it('reports every problem, one line each', () => {
    const p = problems({ AXON_PORT: '70000', AXON_WORKERS: 'two', AXON_REDIS_MODE: 'url', AXON_DEFAULT_ROOM_VERSION: '13', AXON_LEASE_TTL_MS: '1000', AXON_LEASE_RENEW_MS: '900' });
    expect(p).toEqual([
      'AXON_WORKERS=two: must be an integer',
      'clientPort: must be an integer from 1 to 65535 (got 70000)',
      'redis.url: must be a redis:// URL when redis.mode is url (got "")',
      'lease.renewMs: must be at most half of lease.ttlMs, or leases lapse between renewals',
      'defaultRoomVersion: "13" is not one of 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12',
    ]);
  });

  it('bounds requests and Redis commands: defaults, overrides, and how they must relate', () => {
    const c = loadConfig({}, mkdtempSync(join(tmpdir(), 'axon-cfg-')));
    expect(c.requestDeadlineMs).toBe(15_000);
    expect(c.redis.commandTimeoutMs).toBe(5_000);
    expect(c.redis.pingTimeoutMs).toBe(2_000);
    const o = loadConfig({ AXON_REQUEST_DEADLINE_MS: '20000', AXON_REDIS_COMMAND_TIMEOUT_MS: '3000', AXON_REDIS_PING_TIMEOUT_MS: '500' }, mkdtempSync(join(tmpdir(), 'axon-cfg-')));
    expect([o.requestDeadlineMs, o.redis.commandTimeoutMs, o.redis.pingTimeoutMs]).toEqual([20_000, 3_000, 500]);
    expect(problems({ AXON_REQUEST_DEADLINE_MS: 'soon', AXON_REDIS_PING_TIMEOUT_MS: '50' })).toEqual([
      'AXON_REQUEST_DEADLINE_MS=soon: must be an integer',
      'redis.pingTimeoutMs: must be an integer from 100 to 60000 (got 50)',
    ]);
    expect(problems({ AXON_REQUEST_DEADLINE_MS: '10000', AXON_REDIS_COMMAND_TIMEOUT_MS: '5000', AXON_REDIS_PING_TIMEOUT_MS: '7000' })).toEqual([
      'redis.pingTimeoutMs: must be at most redis.commandTimeoutMs (a stall is noticed before commands time out)',
      'redis.commandTimeoutMs: must be under half of requestDeadlineMs, or a request runs out of time before a Redis failure can be told apart',
    ]);
  });

  it('opens registration by default only on a loopback bind address', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'axon-cfg-'));
    expect(registrationOpen(loadConfig({}, cwd))).toBe(true);
    expect(registrationOpen(loadConfig({ AXON_BIND_HOST: '0.0.0.0' }, cwd))).toBe(false);
    expect(registrationOpen(loadConfig({ AXON_BIND_HOST: '0.0.0.0', AXON_REGISTRATION_ENABLED: 'true' }, cwd))).toBe(true);
    expect(registrationOpen(loadConfig({ AXON_REGISTRATION_ENABLED: 'false' }, cwd))).toBe(false);
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].every(isLoopbackHost)).toBe(true);
    expect(['0.0.0.0', '10.0.0.1', '::'].some(isLoopbackHost)).toBe(false);
  });

  it('validates registration and rate limit settings', () => {
    // Tokens may all come from the admin API.
    expect(problems({ AXON_REGISTRATION_REQUIRES_TOKEN: 'true' })).toEqual([]);
    expect(problems({ AXON_REGISTRATION_ENABLED: 'maybe', AXON_RATE_LIMIT_ENABLED: 'off' })).toEqual(['AXON_REGISTRATION_ENABLED=maybe: must be true or false or auto', 'AXON_RATE_LIMIT_ENABLED=off: must be true or false']);
    const c = loadConfig({ AXON_REGISTRATION_REQUIRES_TOKEN: 'true', AXON_REGISTRATION_TOKENS: 'a1,b2', AXON_RATE_LIMIT_ENABLED: 'false' }, mkdtempSync(join(tmpdir(), 'axon-cfg-')));
    expect(c.registration).toEqual({ enabled: 'auto', requiresToken: true, tokens: ['a1', 'b2'], sharedSecret: '' });
    expect(loadConfig({ AXON_REGISTRATION_SHARED_SECRET: 'sixteen-chars-or-more' }, mkdtempSync(join(tmpdir(), 'axon-cfg-'))).registration.sharedSecret).toBe('sixteen-chars-or-more');
    expect(problems({ AXON_REGISTRATION_SHARED_SECRET: 'short' })).toEqual(['registration.sharedSecret: must be at least 16 characters (or empty to turn shared-secret registration off)']);
    expect(c.rateLimit.enabled).toBe(false);
    const cwd = mkdtempSync(join(tmpdir(), 'axon-cfg-'));
    writeFileSync(join(cwd, 'axon.config.json'), JSON.stringify({ rateLimit: { login: { burst: 0 } }, registration: { tokens: ['bad token'] } }));
    expect(problems({}, cwd)).toEqual([
      'registration.tokens: must be a list of tokens of 1 to 64 characters from A-Z a-z 0-9 . _ ~ -',
      'rateLimit.login.burst: must be an integer from 1 to 1000000 (got 0)',
    ]);
  });

  it('has a per-account failed-login limit (Synapse\'s defaults), set by file or environment', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'axon-cfg-'));
    expect(loadConfig({}, cwd).rateLimit.failedLogin).toEqual({ burst: 3, perMinute: 10 });
    expect(loadConfig({ AXON_RATE_LIMIT_FAILED_LOGIN_BURST: '5', AXON_RATE_LIMIT_FAILED_LOGIN_PER_MINUTE: '2' }, cwd).rateLimit.failedLogin).toEqual({ burst: 5, perMinute: 2 });
    expect(problems({ AXON_RATE_LIMIT_FAILED_LOGIN_BURST: 'lots', AXON_RATE_LIMIT_FAILED_LOGIN_PER_MINUTE: '0' })).toEqual([
      'AXON_RATE_LIMIT_FAILED_LOGIN_BURST=lots: must be an integer',
      'rateLimit.failedLogin.perMinute: must be an integer from 1 to 60000000 (got 0)',
    ]);
    writeFileSync(join(cwd, 'axon.config.json'), JSON.stringify({ rateLimit: { failedLogin: { burst: 4 } } }));
    expect(loadConfig({}, cwd).rateLimit.failedLogin).toEqual({ burst: 4, perMinute: 10 });
  });
});
