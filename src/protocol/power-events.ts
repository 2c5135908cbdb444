/**
 * "Power events" (state resolution v2): events that may take away someone's ability to act —
 * power levels, join rules, and kicks/bans (a leave or ban of someone other than the sender).
 * State resolution orders these first, by the power of their senders.
 */
import type { Pdu } from './pdu';

export function isPowerEvent(e: Pdu): boolean {
  if (e.stateKey === undefined) return false;
  if ((e.type === 'm.room.power_levels' || e.type === 'm.room.join_rules') && e.stateKey === '') return true;
  if (e.type === 'm.room.member') {
    const m = e.content.membership;
    return (m === 'leave' || m === 'ban') && e.sender !== e.stateKey;
  }
  return false;
}
