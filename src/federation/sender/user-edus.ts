/**
 * The federation sender's second reader: what changes of OUR users other servers must hear of,
 * from the user shards' outboxes (a consumer group, like reader.ts on the room outboxes):
 *   - presence changes (presence actor) → `m.presence`, to the servers sharing a room with the
 *     user only; the destination actor coalesces them (actors/destination.ts `presence`);
 *   - device changes (user actor: a device added or deleted; keys actor: device keys uploaded,
 *     deleted, cross-signing keys changed) → `m.device_list_update` per device, with a stream id
 *     and the previous one as `prev_id` (a chain per user: a peer that sees a `prev_id` it never
 *     received resyncs with `/user/devices`), and `m.signing_key_update` when the master or
 *     self-signing key may have changed.
 * Device list EDUs are queued like PDUs (durable, sent until delivered); the message id
 * `fede:<destination>:u:<outbox entry id>` makes a re-delivered outbox entry a duplicate.
 *
 * The stream id is the outbox entry's id read as a number (ms × 1000 + sequence), or one above
 * the previous update's when that is larger: it grows with every change of the user with no
 * counter of its own; the newest one sent is kept per user (userFederationData.deviceStream) as
 * the next `prev_id` and as `/user/devices`'s `stream_id`. A re-delivered outbox entry makes new
 * stream ids, but its tells are duplicates the runtime drops; the next update's `prev_id` may then
 * name an id the peer never saw, which only makes it resync.
 */
import type { Logger } from 'pino';
import { DESTINATION_KIND, type DestinationMessage } from '../../../actors/destination';
import { crossSigningPublicKey, withSignaturesOf } from '../../../actors/device-keys';
import { presenceContent, type PresenceRecord } from '../../../actors/presence';
import { serverOf } from '../../protocol/identifiers';
import type { JsonObject } from '../../protocol/json';
import type { Edu } from '../../protocol/transactions';
import { MembershipIndex } from '../../readers/membership-index';
import { decodeOutput, OutboxGroupReader } from '../../readers/outbox-group-reader';
import { sharedRoomUsers } from '../../readers/user-fanout';
import { ActorClient } from '../../runtime/actor-client';
import type { OutboxEntry } from '../../runtime/envelope';
import { shardOf, type Family } from '../../store/shards';
import { FEDERATION_USER_EDU_GROUP, e2eKeyData, userData, userFederationData, type KeySpace } from '../../store/keys';
import type { RedisClient } from '../../store/redis';

/** The stream id of an outbox entry id `<ms>-<seq>`. */
export function streamIdOf(entryId: string): number {
  const [ms, seq] = entryId.split('-');
  return Number(ms) * 1000 + Math.min(Number(seq ?? 0), 999);
}

/** What a user-shard output means for other servers (pure): a presence or a device list change of one of our users. */
export function userChangeOf(kind: string, out: unknown, ourServer: string): { what: 'presence' | 'devices'; userId: string; deviceIds?: string[]; deleted?: boolean } | null {
  if (!out || typeof out !== 'object') return null;
  const o = out as { type?: unknown; user_id?: unknown; self_only?: unknown; device_id?: unknown; device_ids?: unknown; deleted?: unknown };
  if (typeof o.user_id !== 'string' || serverOf(o.user_id) !== ourServer) return null;
  if (kind === 'presence' && o.type === 'presence') return { what: 'presence', userId: o.user_id };
  if (kind === 'user' && o.type === 'device' && typeof o.device_id === 'string') return { what: 'devices', userId: o.user_id, deviceIds: [o.device_id], deleted: o.deleted === true };
  if (kind === 'keys' && o.type === 'device_list' && o.self_only !== true) {
    const ids = Array.isArray(o.device_ids) ? o.device_ids.filter((d): d is string => typeof d === 'string') : undefined;
    return ids ? { what: 'devices', userId: o.user_id, deviceIds: ids } : { what: 'devices', userId: o.user_id };
  }
  return null;
}

export class FederationUserEduReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['presence', 'user', 'keys'];
  private readonly actors: ActorClient;
  private readonly index: MembershipIndex;

  constructor(
    redis: RedisClient,
    keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    private readonly serverName: string,
    consumer: string,
    log: Logger,
  ) {
    super('user', FEDERATION_USER_EDU_GROUP, redis, keys, consumer, log);
    this.actors = new ActorClient(redis, keys, shardCounts, `fededu-${consumer}`);
    this.index = new MembershipIndex(redis, keys, shardCounts.user);
  }

  private data(userId: string, name: string): string {
    return this.keys.shard('user', shardOf(userId, this.shardCounts.user)).data(name);
  }

  /** The other servers with a user sharing a room with `userId`. */
  private async servers(userId: string, cache: Map<string, Promise<Record<string, string>>>): Promise<string[]> {
    const users = await sharedRoomUsers(this.redis, this.keys, this.shardCounts, this.index, userId, cache);
    const out = new Set<string>();
    for (const u of users) {
      const s = serverOf(u);
      if (s && s !== this.serverName) out.add(s);
    }
    return [...out].sort();
  }

  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    const cache = new Map<string, Promise<Record<string, string>>>();
    for (const { id, entry } of entries) {
      if (!entry) continue;
      const change = userChangeOf(entry.kind, decodeOutput(entry), this.serverName);
      if (!change) continue;
      const destinations = await this.servers(change.userId, cache);
      if (destinations.length === 0) continue;
      const edus = change.what === 'presence' ? await this.presenceEdus(change.userId) : await this.deviceEdus(change.userId, id, change.deviceIds, change.deleted === true);
      if (edus.length === 0) continue;
      const body: DestinationMessage = { t: 'edus', edus };
      // In outbox order per destination (one connection): a user's device updates keep their prev_id order.
      await Promise.all(destinations.map((d) => this.actors.tell('user', DESTINATION_KIND, d, body, `fede:${d}:u:${id}`)));
    }
  }

  private async presenceEdus(userId: string): Promise<Edu[]> {
    const raw = await this.redis.get(this.data(userId, userData.presence(userId)));
    if (!raw) return [];
    let rec: PresenceRecord;
    try {
      rec = JSON.parse(raw) as PresenceRecord;
    } catch {
      return [];
    }
    return [{ edu_type: 'm.presence', content: { push: [{ user_id: userId, ...(presenceContent(rec, Date.now()) as JsonObject) }] } }];
  }

  /**
   * One `m.device_list_update` per device named (all of the user's devices when none is), each
   * chained to the previous, and `m.signing_key_update` when no device was named (a cross-signing
   * change, or a change whose devices the output does not say).
   */
  private async deviceEdus(userId: string, entryId: string, deviceIds: string[] | undefined, deleted: boolean): Promise<Edu[]> {
    const streamKey = this.data(userId, userFederationData.deviceStream(userId));
    const [prevRaw, devices, dk, cross, ownSigs] = await Promise.all([
      this.redis.get(streamKey),
      this.redis.hgetall(this.data(userId, userData.devices(userId))),
      this.redis.hgetall(this.data(userId, e2eKeyData.deviceKeys(userId))),
      deviceIds ? Promise.resolve({} as Record<string, string>) : this.redis.hgetall(this.data(userId, e2eKeyData.crossSigningKeys(userId))),
      // The user's signatures of their own keys are stored apart from the keys (a device signed
      // by the self-signing key, the master key signed by a device): the peer needs them.
      this.redis.hgetall(this.data(userId, e2eKeyData.signatures(userId, userId))),
    ]);
    let prev = prevRaw ? Number(prevRaw) : 0;
    // Strictly increasing even when one entry names several devices (the next entry's id may be
    // only one above this one's): each update takes the larger of its entry's id and prev + 1.
    let streamId = Math.max(streamIdOf(entryId), prev + 1);
    const edus: Edu[] = [];
    const ids = deviceIds ?? Object.keys(devices);
    ids.forEach((deviceId) => {
      const content: JsonObject = { user_id: userId, device_id: deviceId, stream_id: streamId, prev_id: prev > 0 ? [prev] : [] };
      const record = devices[deviceId];
      if (deleted || record === undefined) content.deleted = true;
      else {
        const name = (JSON.parse(record) as { display_name?: string }).display_name;
        if (name !== undefined) content.device_display_name = name;
        if (dk[deviceId]) content.keys = withSignaturesOf(JSON.parse(dk[deviceId]!) as JsonObject, deviceId, userId, ownSigs);
      }
      edus.push({ edu_type: 'm.device_list_update', content });
      prev = streamId++;
    });
    if (!deviceIds && (cross.master || cross.self_signing)) {
      const content: JsonObject = { user_id: userId };
      if (cross.master) {
        const master = JSON.parse(cross.master) as JsonObject;
        const pub = crossSigningPublicKey(master);
        content.master_key = pub ? withSignaturesOf(master, pub.publicKey, userId, ownSigs) : master;
      }
      if (cross.self_signing) content.self_signing_key = JSON.parse(cross.self_signing) as JsonObject;
      edus.push({ edu_type: 'm.signing_key_update', content });
    }
    if (prev > 0) await this.redis.set(streamKey, String(prev));
    return edus;
  }
}
