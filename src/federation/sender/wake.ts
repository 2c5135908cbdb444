/**
 * Wake on inbound traffic: a peer that just made an authenticated request to us is up, so a
 * destination actor backing off from it should retry now rather than wait out its timer (Synapse
 * does the same: hearing from a destination resets its retry timings). Called for every
 * authenticated federation request, it has to be cheap: the destination actor keeps the key
 * `fed:<server>:backoff` in its shard while it backs off (actors/destination.ts), so this is one
 * GET per peer and second at most; only when the key is there is the actor told `wake`, with a
 * message id derived from the backoff's retry time, so a burst of requests during one backoff
 * makes one wake-up (the runtime dedupes the rest).
 */
import type { Logger } from 'pino';
import { DESTINATION_KIND, type DestinationMessage } from '../../../actors/destination';
import type { ActorClient } from '../../runtime/actor-client';
import { shardOf, type Family } from '../../runtime/shards';
import { destinationData, type KeySpace } from '../../store/keys';
import type { RedisClient } from '../../store/redis';

/** A peer is checked at most this often (per process). */
const CHECK_EVERY_MS = 1_000;
/** Peers remembered for that; the memory is dropped whole when it grows past this. */
const MAX_REMEMBERED = 10_000;

export class DestinationWaker {
  private readonly lastCheck = new Map<string, number>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    private readonly actors: Pick<ActorClient, 'tell'>,
    private readonly log?: Logger,
  ) {}

  /** `origin` just talked to us (its request was authenticated). Never throws, never waits the caller. */
  heardFrom(origin: string, now = Date.now()): void {
    const last = this.lastCheck.get(origin);
    if (last !== undefined && now - last < CHECK_EVERY_MS) return;
    if (this.lastCheck.size >= MAX_REMEMBERED) this.lastCheck.clear();
    this.lastCheck.set(origin, now);
    void this.wakeIfBackingOff(origin).catch((e) => this.log?.warn({ err: e, origin }, 'could not check the destination backoff'));
  }

  /** Whether the destination was backing off (and was told to wake). */
  async wakeIfBackingOff(origin: string): Promise<boolean> {
    const key = this.keys.shard('user', shardOf(origin, this.shardCounts.user)).data(destinationData.backoff(origin));
    const retryAt = await this.redis.get(key);
    if (retryAt === null) return false;
    const body: DestinationMessage = { t: 'wake' };
    await this.actors.tell('user', DESTINATION_KIND, origin, body, `fedwake:${origin}:${retryAt}`);
    return true;
  }
}
