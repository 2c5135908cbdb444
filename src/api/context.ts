/** What every API handler (client-server and server-server) may use. Built once per front process (src/front.ts). */
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import type { ActorClient } from '../runtime/actor-client';
import type { SigningKey } from '../protocol/crypto';
import type { KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import type { RoomReader } from '../store/room-reader';
import type { Family } from '../store/shards';
import type { RateLimiter } from '../http/rate-limit';
import type { JsonObject, JsonValue } from '../protocol/json';
import type { FederationClient } from '../federation/client';
import type { ServerKeyStore } from '../federation/keys/key-store';
import type { MediaServices } from '../media/services';
import type { AppserviceRegistry } from '../appservice/registration';
import type { AppserviceQueries } from '../appservice/queries';

export interface ApiContext {
  config: AxonConfig;
  redis: RedisClient;
  keys: KeySpace;
  shardCounts: Record<Family, number>;
  /** Commands to actors (every write goes through the owning actor). */
  actors: ActorClient;
  /** Reads of room data. */
  rooms: RoomReader;
  /** The server's signing key (fronts build and sign m.room.create events: v12 room ids derive from them). */
  signingKey: SigningKey;
  log: Logger;
  /** Rate limits (`login`, `register` per IP; `client` per user, taken by requireUser). */
  limiter?: RateLimiter;
  /** Called when the front closes (e.g. the /sync notifier's subscription). */
  closers?: (() => void)[];
  /**
   * False while Redis is known to be unreachable (the front's PING loop): work about to start
   * (a long-poll's next computation) answers 503 at once instead of waiting out command timeouts.
   */
  storeReady?: () => boolean;
  /** Called after every request to a user's keys actor (/sync drops the key counts it keeps for them). */
  keysChanged?: ((userId: string) => void)[];
  /** Called after every command a room actor accepted from this front (src/rooms/ask.ts; /sync prebuilds the room's initial-sync slice once it is quiet). */
  roomWritten?: ((roomId: string) => void)[];
  /** The media repository (src/api/client/media.ts, src/media/); absent in processes that serve no media. */
  media?: MediaServices;
  /**
   * The registered application services and the questions the server asks them (src/appservice/).
   * Absent in contexts built without them (unit tests): no appservices then.
   */
  appservices?: { registry: AppserviceRegistry; queries: AppserviceQueries };
  /** Reads from other servers (absent when federation is off). */
  federation?: {
    /** A remote user's profile from their server; throws a MatrixError when it cannot be had. */
    remoteProfile(userId: string): Promise<Record<string, JsonValue>>;
    /**
     * Another server's room directory (client `/publicRooms?server=`): its answer as is, or a
     * MatrixError (src/api/federation/remote-public-rooms.ts).
     */
    publicRooms?(server: string, request: RemotePublicRoomsRequest): Promise<JsonObject>;
    /**
     * A room's hierarchy from servers that have it (federation `/hierarchy`, tried in order),
     * or null when none of them answered (src/api/federation/remote-hierarchy.ts).
     */
    hierarchy?(roomId: string, via: readonly string[], suggestedOnly: boolean): Promise<RemoteHierarchy | null>;
    /** The outbound client and the key store (our users joining rooms on other servers: src/rooms/join-remote.ts). */
    client?: FederationClient;
    keyStore?: ServerKeyStore;
    /** Start the background fetch of a partial-state room's full state (src/rooms/partial-state.ts). */
    partialStates?: { start(roomId: string): void };
  };
}

/** What the client API's `/publicRooms?server=` passes on to the other server. */
export interface RemotePublicRoomsRequest {
  limit?: number;
  since?: string;
  /** The client's `filter` (MSC2197): sent with a POST; otherwise a GET. */
  filter?: JsonObject;
  includeAllNetworks: boolean;
  thirdPartyInstanceId?: string;
}

/** A federation `/hierarchy` answer, checked: the room, its `m.space.child` events, its children. */
export interface RemoteHierarchy {
  /** The room's summary, without `children_state`. */
  room: JsonObject;
  childrenState: JsonObject[];
  /** Summaries of children the answering server has (and lets us see), by room id. */
  children: Map<string, JsonObject>;
  /** Children the answering server says we cannot see: not to be asked about again. */
  inaccessible: Set<string>;
}
