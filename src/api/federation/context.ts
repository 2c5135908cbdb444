/** What every Server-Server API handler may use. Built once per front process (src/front.ts). */
import type { Logger } from 'pino';
import type { AxonConfig } from '../../../cluster.config';
import type { FederationClient } from '../../federation/client';
import type { ServerKeyStore } from '../../federation/keys/key-store';
import type { OwnKeyDocument } from '../../federation/keys/own-keys';
import type { ApiContext } from '../context';

export interface FederationContext {
  config: AxonConfig;
  /** Our key document (served, and used to sign notary answers). */
  own: OwnKeyDocument;
  /** Other servers' keys (X-Matrix verification, notary answers). */
  keyStore: ServerKeyStore;
  client: FederationClient;
  log: Logger;
  /** The client API's context: the same store readers (profiles, rooms). */
  api: ApiContext;
}
