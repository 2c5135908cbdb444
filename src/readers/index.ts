/**
 * Every outbox reader a worker runs for the shards it owns. New readers are registered here. The
 * readers of a family share one consumer group (OutboxReaderGroup: each outbox read and
 * acknowledged once for all of them); the push evaluator keeps its own, so that a big room's
 * evaluation does not set the pace of the others (see src/readers/reader-group.ts).
 */
import type { Logger } from 'pino';
import type { ShardReader } from '../runtime/worker';
import { FAMILIES, type Family } from '../store/shards';
import type { KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { MembershipIndexReader } from './membership-index';
import { DeactivationReader } from './deactivation';
import { UserFanoutReader } from './user-fanout';
import { PushEvaluatorReader } from './push-evaluator';
import { SearchIndexReader } from './search-indexer';
import { OutboxReaderGroup } from './reader-group';
import type { OutboxGroupReader } from './outbox-group-reader';
import { RecencyIndexReader } from './recency-index';
import type { PushQueue } from '../push/queue';
import { DelayedEventsReader, DelayedStateReader } from './delayed-events';
import { FederationSenderReader } from '../federation/sender/reader';
import { FederationUserEduReader } from '../federation/sender/user-edus';
import { AppserviceRoomReader, AppserviceUserReader } from '../appservice/reader';
import type { AppserviceRegistry } from '../appservice/registration';

export function allReaders(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, workerId: string, log: Logger, server: { serverName: string; federation?: boolean; push?: PushQueue; threadSubscriptions?: boolean; appservices?: AppserviceRegistry }): ShardReader[] {
  const readers: OutboxGroupReader[] = [
    new MembershipIndexReader(redis, keys, shardCounts.user, workerId, log),
    new DeactivationReader(redis, keys, shardCounts, workerId, log),
    new UserFanoutReader(redis, keys, shardCounts, workerId, log),
    new DelayedEventsReader(redis, keys, shardCounts, workerId, log),
    new DelayedStateReader(redis, keys, shardCounts, workerId, log),
    new SearchIndexReader(redis, keys, shardCounts, workerId, log),
    // Sliding sync's per-user rooms by recency (src/sync/sliding/recency.ts reads it).
    new RecencyIndexReader(redis, keys, shardCounts, server.serverName, workerId, log),
  ];
  // Queues our users' events at the destination actors of the other servers in their rooms.
  if (server.federation) readers.push(new FederationSenderReader(redis, keys, shardCounts, server.serverName, workerId, log));
  // Our users' presence and device list changes, as EDUs to the servers sharing a room with them.
  if (server.federation) readers.push(new FederationUserEduReader(redis, keys, shardCounts, server.serverName, workerId, log));
  // What the application services must hear of, queued at their actors (issue 22.3).
  if (server.appservices && server.appservices.size > 0) {
    readers.push(new AppserviceRoomReader(redis, keys, shardCounts, server.appservices, workerId, log));
    readers.push(new AppserviceUserReader(redis, keys, shardCounts, server.appservices, workerId, log));
  }
  const groups: ShardReader[] = FAMILIES.flatMap((family) => {
    const members = readers.filter((r) => r.family === family);
    return members.length ? [new OutboxReaderGroup(family, members, redis, keys, workerId, log)] : [];
  });
  return [...groups, new PushEvaluatorReader(redis, keys, shardCounts, server.serverName, workerId, log, server.push, { threadSubscriptions: server.threadSubscriptions === true })];
}
