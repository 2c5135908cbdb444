/**
 * What a worker process needs to run the federation sender (issue 14.6), built once from the
 * configuration by every place that starts workers (src/worker-main.ts, src/main.ts, the e2e
 * harness): the destination actors' options (a federation client of the worker's own, the
 * transport over it, where the rooms' stores are, the limits of `federation.sender`) and the
 * reader's switch. Null when federation
 * is off: no destination actors, no reader.
 */
import type { Logger } from 'pino';
import type { AxonConfig } from '../../../cluster.config';
import type { DestinationActorOptions } from '../../../actors/destination';
import type { SigningKey } from '../../protocol/crypto';
import { federationIpBlocklist } from '../../protocol/ip-ranges';
import { shardCountsFor } from '../../runtime/cluster-settings';
import { KeySpace } from '../../store/keys';
import { ownEventSigner } from '../../rooms/own-signatures';
import { FederationClient } from '../client';
import { FederationTransport } from './transport';

export interface FederationSenderSetup {
  /** For allActorKinds(room, …). */
  actor: DestinationActorOptions;
  /** Closes the client's keep-alive connections (at shutdown). */
  close(): void;
}

export function federationSenderSetup(config: AxonConfig, signingKey: SigningKey, log: Logger): FederationSenderSetup | null {
  const f = config.federation;
  if (!f.enabled) return null;
  const client = new FederationClient({
    serverName: config.serverName,
    signingKey,
    caPaths: f.caPaths,
    verifyTls: f.verifyTls,
    blocklist: federationIpBlocklist(f.ipRangeBlocklist),
    log: log.child({ component: 'federation-sender' }),
  });
  return {
    actor: {
      transport: new FederationTransport(client),
      signer: ownEventSigner(config.serverName, signingKey),
      keys: new KeySpace(config.redis.keyPrefix),
      roomShards: shardCountsFor(config).room,
      limits: { maxPendingPdus: f.sender.catchUpLimit, minRetryMs: f.sender.backoffStartMs, maxRetryMs: f.sender.backoffMaxMs },
    },
    close: () => client.close(),
  };
}
