/** Every actor kind a worker runs. New kinds (user, ephemeral) are registered here. */
import type { AnyActorKind } from './actor';
import { aliasActor } from '../../actors/alias';
import { deviceKeysActor } from '../../actors/device-keys';
import { ledgerActor } from '../../actors/ledger';
import { roomActor } from '../../actors/room';
import type { RoomConfig } from '../rooms/model';
import { userActor } from '../../actors/user';
import { toDeviceActor } from '../../actors/to-device';
import { typingActor } from '../../actors/typing';
import { presenceActor } from '../../actors/presence';
import { receiptActor } from '../../actors/receipts';
import { keyBackupActor } from '../../actors/key-backup';
import { reportsActor } from '../../actors/reports';
import { destinationActor, type DestinationActorOptions } from '../../actors/destination';
import { appserviceActor, type AppserviceActorOptions } from '../../actors/appservice';
import { mediaActor } from '../../actors/media';
import { mediaContentActor } from '../../actors/media-content';
import { delayedEventsActor } from '../../actors/delayed-events';
import { threadSubscriptionsActor } from '../../actors/thread-subscriptions';

/**
 * `room` is needed for room actors (they sign events); without it only the other kinds run. Alias
 * actors live in the room shards too (an alias hashes to one) and run with the room actors.
 */
export function allActorKinds(room?: RoomConfig, federation?: DestinationActorOptions, appservice?: AppserviceActorOptions): AnyActorKind[] {
  const kinds: AnyActorKind[] = [
    ledgerActor('user'),
    userActor(),
    toDeviceActor(),
    keyBackupActor(),
    reportsActor(),
    presenceActor(),
    // With federation on, our users' typing is kept alive on other servers (actors/typing.ts).
    typingActor(federation?.transport.origin),
    receiptActor(),
    deviceKeysActor(),
    // The media repository's metadata (issue 15): items by media id, blob references by sha256.
    mediaActor(),
    mediaContentActor(),
    // MSC4140: each user's delayed events, with their durable timers.
    delayedEventsActor(),
    // MSC4306: each user's thread subscriptions.
    threadSubscriptionsActor(),
  ];
  if (room) kinds.push(roomActor(room), aliasActor());
  // The federation sender's per-peer actors (issue 14.6): only where federation is on.
  if (federation) kinds.push(destinationActor(federation));
  // One actor per application service (issue 22.3): only where registrations are configured.
  if (appservice) kinds.push(appserviceActor(appservice));
  return kinds;
}
