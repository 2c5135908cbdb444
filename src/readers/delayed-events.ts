/**
 * Sends due delayed events (MSC4140): for each `delayed_event_due` entry on a user shard's outbox
 * (actors/delayed-events.ts removed the delayed event in the same commit), the event goes to the
 * room actor as its owner's, exactly as `/send` or `/state` would send it — authorised against the
 * room's state at that moment, so an owner who has left or lost the power to send it gets nothing
 * sent (logged, and dropped, as Synapse does).
 *
 * Exactly once: a consumer group on the user outboxes, so an entry whose worker died before the
 * ack is read again by the shard's next holder; the command's message id and the room's
 * transaction key are both derived from the delay id, so the second attempt gets the first one's
 * stored answer and no second event. Membership events are recorded in the sender's joined-rooms
 * index as the client routes do (the membership index reader would record them too).
 *
 * `DelayedStateReader` applies MSC4140's rule for state: when someone else sets a piece of state
 * (a current-state change on a room outbox), the delayed state events other users scheduled for
 * it before then are cancelled (Synapse's `cancel_delayed_state_events`: the sender's own are
 * kept). Who has some comes from the derived index `delayedStateIndex`; each owner's actor is
 * told with a message id derived from the event, so a re-read entry cancels nothing twice.
 */
import type { Logger } from 'pino';
import { DELAYED_EVENTS_KIND, delayedEventTxn, type DelayedEventDueOutput, type DelayedEventsMessage } from '../../actors/delayed-events';
import type { EventTemplate } from '../rooms/model';
import { ActorClient, ActorReplyError } from '../runtime/actor-client';
import type { OutboxEntry } from '../runtime/envelope';
import type { Family } from '../store/shards';
import { decode } from '../store/codec';
import { DELAYED_EVENTS_GROUP, DELAYED_STATE_GROUP, delayedStateIndex, type KeySpace } from '../store/keys';
import type { RoomOutput } from '../rooms/model';
import type { RedisClient } from '../store/redis';
import { MembershipIndex } from './membership-index';
import { OutboxGroupReader } from './outbox-group-reader';


export class DelayedEventsReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = [DELAYED_EVENTS_KIND];
  private readonly index: MembershipIndex;
  private readonly actors: ActorClient;
  private started: Promise<void> | null = null;

  constructor(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, consumer: string, log: Logger) {
    super('user', DELAYED_EVENTS_GROUP, redis, keys, consumer, log);
    this.index = new MembershipIndex(redis, keys, shardCounts.user);
    // Started (its reply stream read) the first time a delayed event is due.
    this.actors = new ActorClient(redis, keys, shardCounts, `delayed-${consumer}`);
  }

  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    for (const { entry } of entries) {
      if (!entry || entry.kind !== DELAYED_EVENTS_KIND) continue;
      let out: DelayedEventDueOutput;
      try {
        out = decode<DelayedEventDueOutput>(entry.body);
      } catch {
        continue;
      }
      if (out?.type !== 'delayed_event_due') continue;
      await this.send(out);
    }
  }

  private async send(out: DelayedEventDueOutput): Promise<void> {
    this.started ??= this.actors.start();
    await this.started;
    const event: EventTemplate = { type: out.event_type, sender: out.user_id, content: out.content, ...(out.state_key !== undefined ? { state_key: out.state_key } : {}) };
    try {
      const reply = await this.actors.ask<{ event_id: string; pos: number }>('room', 'room', out.room_id, { op: 'send', event, txn: delayedEventTxn(out.delay_id) }, { mid: `delayed:${out.delay_id}` });
      if (event.type === 'm.room.member' && out.state_key !== undefined && typeof out.content.membership === 'string') await this.index.record(out.state_key, out.room_id, reply.pos, out.content.membership);
      this.log.info({ user_id: out.user_id, room_id: out.room_id, event_id: reply.event_id, delay_id: out.delay_id }, 'delayed event sent');
    } catch (e) {
      // Refused by the room (no longer allowed, room gone): dropped, as Synapse drops it.
      if (e instanceof ActorReplyError) {
        this.log.warn({ user_id: out.user_id, room_id: out.room_id, delay_id: out.delay_id, errcode: e.errcode, err: e.message }, 'delayed event refused by the room');
        return;
      }
      throw e; // a timeout: the entry stays pending and is retried (same ids: sent once)
    }
  }

  override async stop(): Promise<void> {
    await super.stop();
    // biome-ignore lint/nursery/noMisusedPromises: `started` is null until the first send; a null check, not a condition on the promise's result
    if (this.started) await this.actors.close(1000).catch(() => undefined);
  }
}

export class DelayedStateReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['room'];
  private readonly actors: ActorClient;
  private started: Promise<void> | null = null;

  constructor(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, consumer: string, log: Logger) {
    super('room', DELAYED_STATE_GROUP, redis, keys, consumer, log);
    this.actors = new ActorClient(redis, keys, shardCounts, `delayed-state-${consumer}`);
  }

  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    // The batch's current-state changes, in order.
    const changes: { at: number; out: RoomOutput & { event: { type: string; state_key: string } } }[] = [];
    for (const { id, entry } of entries) {
      if (!entry || entry.kind !== 'room') continue;
      let out: RoomOutput;
      try {
        out = decode<RoomOutput>(entry.body);
      } catch {
        continue;
      }
      // Only changes of the room's current state (an outlier or a backfilled event sets nothing).
      if (!out?.state || typeof out.event?.type !== 'string' || typeof out.event.state_key !== 'string') continue;
      changes.push({ at: Number(id.split('-')[0]), out: out as RoomOutput & { event: { type: string; state_key: string } } });
    }
    if (changes.length === 0) return;
    // One look-up per change, all in flight at once (pipelined): most find nobody.
    const owners = await Promise.all(changes.map(({ out }) => this.redis.smembers(`${this.keys.prefix}${delayedStateIndex(out.roomId, out.event.type, out.event.state_key)}`)));
    for (let i = 0; i < changes.length; i++) {
      const { at, out } = changes[i]!;
      for (const owner of owners[i]!) {
        if (owner === out.event.sender) continue;
        const body: DelayedEventsMessage = { op: 'cancel_state', roomId: out.roomId, type: out.event.type, stateKey: out.event.state_key, before: at };
        this.started ??= this.actors.start();
        await this.started;
        try {
          const reply = await this.actors.ask<{ cancelled: number }>('user', DELAYED_EVENTS_KIND, owner, body, { mid: `delayed-state:${out.eventId}:${owner}` });
          if (reply.cancelled > 0) this.log.info({ user_id: owner, room_id: out.roomId, event_id: out.eventId, cancelled: reply.cancelled }, 'delayed state events cancelled: someone else set that state');
        } catch (e) {
          if (e instanceof ActorReplyError) continue;
          throw e; // a timeout: the entry stays pending and is read again (same ids)
        }
      }
    }
  }

  override async stop(): Promise<void> {
    await super.stop();
    // biome-ignore lint/nursery/noMisusedPromises: `started` is null until the first cancellation; a null check, not a condition on the promise's result
    if (this.started) await this.actors.close(1000).catch(() => undefined);
  }
}
