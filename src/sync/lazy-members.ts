/**
 * Which member events each device has been sent under lazy loading, per room, so an incremental
 * sync leaves out the ones it already has (`include_redundant_members: false`, the spec's default).
 * Kept in the front's memory, as Synapse keeps it: a sync served by another front, or after a
 * restart, sends them again — redundant then, never missing. An initial sync starts a room over.
 */
export class LazyMembersSent {
  /** `user|device|room` → member user id → the member event id sent; oldest-used first. */
  private readonly sent = new Map<string, Map<string, string>>();

  constructor(private readonly maxEntries = 20_000) {}

  private entry(userId: string, deviceId: string, roomId: string, create: boolean): Map<string, string> | undefined {
    const key = `${userId}|${deviceId}|${roomId}`;
    let m = this.sent.get(key);
    if (m) {
      // Most recently used last, so the first key is the one to evict.
      this.sent.delete(key);
      this.sent.set(key, m);
    } else if (create) {
      m = new Map();
      this.sent.set(key, m);
      if (this.sent.size > this.maxEntries) this.sent.delete(this.sent.keys().next().value!);
    }
    return m;
  }

  /** Forget what the device was sent in the room (its initial sync sends the room afresh). */
  reset(userId: string, deviceId: string, roomId: string): void {
    this.sent.delete(`${userId}|${deviceId}|${roomId}`);
  }

  /** Whether the device already has exactly this member event of `member`. */
  has(userId: string, deviceId: string, roomId: string, member: string, eventId: string): boolean {
    return this.entry(userId, deviceId, roomId, false)?.get(member) === eventId;
  }

  /** Notes member events the device has been sent (in state or in the timeline). */
  record(userId: string, deviceId: string, roomId: string, members: { member: string; eventId: string }[]): void {
    if (members.length === 0) return;
    const m = this.entry(userId, deviceId, roomId, true)!;
    for (const { member, eventId } of members) m.set(member, eventId);
  }
}
