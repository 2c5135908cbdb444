/** Every actor kind a worker runs. New kinds (room, user, ephemeral) are registered here. */
import type { ActorKind } from './actor';
import { ledgerActor } from '../../actors/ledger';

export function allActorKinds(): ActorKind<any, any, any, any>[] {
  return [ledgerActor('user')];
}
