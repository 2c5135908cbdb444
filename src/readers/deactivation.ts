/**
 * Takes deactivated users out of their rooms (as Synapse's "user parter" does): for each
 * `deactivated` entry on a user shard's outbox, every room the membership index has the user
 * joined to, invited to or knocking on gets a leave from the user — leaving, rejecting the
 * invite, rescinding the knock — and is marked forgotten. With `erase`, the user's join events
 * are first replaced by ones without a display name or avatar (Synapse clears the profile into
 * the rooms before parting), so the room's current state stops showing them.
 *
 * Durable: it is a consumer group on the user outboxes, so a worker that dies midway leaves the
 * entry pending and the shard's next holder parts the rest. Commands go to the room and user
 * actors with message ids derived from the outbox entry, so an entry applied twice sends nothing
 * twice (the runtime's dedupe answers the stored reply); a leave the room refuses (the user was
 * already out) is skipped.
 */
import type { Logger } from 'pino';
import type { UserOutput } from '../../actors/user';
import type { EventTemplate } from '../rooms/model';
import { ActorClient, ActorReplyError } from '../runtime/actor-client';
import type { OutboxEntry } from '../runtime/envelope';
import type { Family } from '../store/shards';
import { decode } from '../store/codec';
import { DEACTIVATION_GROUP, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { RoomReader } from '../store/room-reader';
import { MembershipIndex } from './membership-index';
import { OutboxGroupReader } from './outbox-group-reader';

const PARTED = new Set(['join', 'invite', 'knock']);

export class DeactivationReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['user'];
  private readonly index: MembershipIndex;
  private readonly rooms: RoomReader;
  private readonly actors: ActorClient;

  constructor(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, consumer: string, log: Logger) {
    super('user', DEACTIVATION_GROUP, redis, keys, consumer, log);
    this.index = new MembershipIndex(redis, keys, shardCounts.user);
    this.rooms = new RoomReader(redis, keys, shardCounts.room);
    // Started (its reply stream read) the first time a deactivation comes by.
    this.actors = new ActorClient(redis, keys, shardCounts, `deactivation-${consumer}`);
  }

  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    for (const { id, entry } of entries) {
      if (!entry || entry.kind !== 'user') continue;
      let out: UserOutput;
      try {
        out = decode<UserOutput>(entry.body);
      } catch {
        continue;
      }
      if (out?.type !== 'deactivated') continue;
      await this.part(out.user_id, out.erase, id);
    }
  }

  private started: Promise<void> | null = null;

  /** Ask an actor; a refusal (the user was already out of the room, …) is null, not an error. */
  private async ask<R>(family: Family, kind: string, actorId: string, body: unknown, mid: string): Promise<R | null> {
    this.started ??= this.actors.start();
    await this.started;
    try {
      return await this.actors.ask<R>(family, kind, actorId, body, { mid });
    } catch (e) {
      if (e instanceof ActorReplyError) return null;
      throw e; // a timeout: the entry stays pending and is retried (the same ids: applied once)
    }
  }

  private async part(userId: string, erase: boolean, entryId: string): Promise<void> {
    const memberships = (await this.index.rooms(userId)).filter((m) => PARTED.has(m.membership));
    for (const { roomId, membership } of memberships) {
      const mid = (step: string) => `deactivate:${userId}:${entryId}:${roomId}:${step}`;
      const member = (content: Record<string, unknown>): { op: 'send'; event: EventTemplate } => ({
        op: 'send',
        event: { type: 'm.room.member', state_key: userId, sender: userId, content: content as EventTemplate['content'] },
      });
      if (erase && membership === 'join') {
        const [current] = await this.rooms.currentState(roomId, { type: 'm.room.member', stateKey: userId });
        const content = current?.event.content as Record<string, unknown> | undefined;
        if (content?.membership === 'join' && (content.displayname !== undefined || content.avatar_url !== undefined)) {
          await this.ask('room', 'room', roomId, member({ membership: 'join' }), mid('profile'));
        }
      }
      const left = await this.ask<{ pos: number }>('room', 'room', roomId, member({ membership: 'leave' }), mid('leave'));
      // Indexed before forgetting: the forget must not be undone by the index learning of an
      // earlier join late (the index keeps only the newest membership, and only joins clear it).
      if (left) await this.index.record(userId, roomId, left.pos, 'leave');
      // They cannot forget the room themselves any more (Synapse forgets it for them too).
      await this.ask('user', 'user', userId, { op: 'forget', roomId }, mid('forget'));
    }
    if (memberships.length) this.log.info({ user_id: userId, rooms: memberships.length }, 'deactivated user parted from rooms');
    // Their server-side key backups go too (as in Synapse); nobody can restore from them any more.
    await this.ask('user', 'keybackup', userId, { op: 'delete_all' }, `deactivate:${userId}:${entryId}:keybackup`);
    // And their delayed events (MSC4140): none is sent on behalf of a deactivated account (as Synapse).
    await this.ask('user', 'delayed-events', userId, { op: 'cancel_all' }, `deactivate:${userId}:${entryId}:delayed`);
    // And their thread subscriptions (MSC4306), as Synapse purges them.
    await this.ask('user', 'thread-subscriptions', userId, { op: 'purge' }, `deactivate:${userId}:${entryId}:threadsubs`);
  }

  override async stop(): Promise<void> {
    await super.stop();
    // biome-ignore lint/nursery/noMisusedPromises: `started` is null until start(); a null check, not a condition on the promise's result
    if (this.started) await this.actors.close(1000).catch(() => undefined);
  }
}
