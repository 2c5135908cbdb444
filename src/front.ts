/**
 * A front: the uWS HTTP server with every route, plus the ActorClient it uses to reach actors.
 * Several front processes can serve one port (uWS listens with SO_REUSEPORT on Linux; the kernel
 * spreads connections between them).
 */
import type { Logger } from 'pino';
import type { AxonConfig } from '../cluster.config';
import { ActorClient } from './runtime/actor-client';
import { shardCountsFor } from './runtime/cluster-settings';
import { Front } from './http/server';
import { RateLimiter } from './http/rate-limit';
import { registerClientApi } from './api/client/index';
import type { ApiContext } from './api/client/context';
import { RoomReader } from './store/room-reader';
import { registerKeyRoutes } from './api/federation/keys';
import type { SigningKey } from './protocol/crypto';
import { KeySpace } from './store/keys';
import type { RedisClient } from './store/redis';

export interface RunningFront {
  port: number;
  actors: ActorClient;
  close(): Promise<void>;
}

export async function startFront(config: AxonConfig, redis: RedisClient, keys: SigningKey[], log: Logger, frontId?: string): Promise<RunningFront> {
  const keySpace = new KeySpace(config.redis.keyPrefix);
  const shardCounts = shardCountsFor(config);
  const actors = new ActorClient(redis, keySpace, shardCounts, frontId);
  await actors.start();
  const front = new Front({ host: config.bindHost, port: config.clientPort, logger: log });
  const ctx: ApiContext = { config, redis, keys: keySpace, shardCounts, actors, rooms: new RoomReader(redis, keySpace, shardCounts.room), signingKey: keys[0]!, log, limiter: new RateLimiter({ login: config.rateLimit.login, register: config.rateLimit.register, client: config.rateLimit.client }, config.rateLimit.enabled, { redis, keys: keySpace, log }), closers: [] };
  registerClientApi(front, ctx);
  registerKeyRoutes(front, config.serverName, keys, config.keyValidityMs);
  const port = await front.listen();
  return {
    port,
    actors,
    async close() {
      // Requests in flight are answered first (drain), then the actor client lets go.
      await front.drain();
      for (const c of ctx.closers ?? []) c();
      await actors.close();
    },
  };
}
