/**
 * What can go wrong calling a peer, as types the callers tell apart: the peer answered with a
 * Matrix error (its status and errcode are worth passing on), we refused to connect (blocklist),
 * we could not reach it, it took too long, or its answer was not acceptable (not strict JSON,
 * too large, a redirect).
 */
export class FederationError extends Error {
  constructor(
    readonly destination: string,
    message: string,
  ) {
    super(`${destination}: ${message}`);
    this.name = new.target.name;
  }
}

/** The peer answered with a non-2xx status (`errcode`/`error` from its body when it had them). */
export class FederationRemoteError extends FederationError {
  constructor(
    destination: string,
    readonly status: number,
    readonly errcode: string | undefined,
    readonly remoteMessage: string | undefined,
  ) {
    super(destination, `HTTP ${status}${errcode ? ` ${errcode}` : ''}${remoteMessage ? `: ${remoteMessage}` : ''}`);
  }
}

/** Every address the destination resolved to is in the IP blocklist (or the name is an IP that is). */
export class FederationBlockedError extends FederationError {}

/** No connection or no complete answer (refused, reset, TLS failure, DNS failure). */
export class FederationNetworkError extends FederationError {}

/** Connect or total timeout. */
export class FederationTimeoutError extends FederationError {}

/** An answer we do not accept: not strict JSON, over the size limit, a redirect. */
export class FederationBadResponseError extends FederationError {}

/** The server name cannot be resolved to anywhere to connect to. */
export class FederationDiscoveryError extends FederationError {}
