/**
 * MediaContentActor: counts the references to one stored blob (actor id = its sha256), so that
 * identical uploads are stored once and a blob is deleted only when nothing refers to it. It
 * lives in the user-family shard the sha256 hashes to; the references to the blob are a set there
 * (`mediaData.contentRefs`; each is a media id and its upload attempt), so a reference added twice
 * (a re-delivered message) counts once, and two uploads racing for one reserved id hold two.
 *
 * Deleting bytes is not a Redis write, so it is a handshake with whoever dropped the last
 * reference: `unref` answers `purge: true` and marks the blob `deleting`; the caller deletes it
 * from the MediaStore and sends `purged`. While `deleting`, a new `ref` (an upload of the same
 * content) is refused with 503 and retried by the uploader, because the bytes it is about to
 * commit could otherwise be deleted under it. A deleter that died leaves `deleting` behind;
 * after DELETING_TIMEOUT_MS it no longer blocks new references.
 *
 * Messages: `ref` {ref}, `unref` {ref}, `purged`.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type ShellContext } from '../src/runtime/actor';
import { mediaData } from '../src/store/keys';

export interface MediaContentState {
  sha256: string;
  /** How many media ids refer to the blob (the size of the refs set). */
  refs: number;
  /** When the last reference went and the blob was handed over for deletion (ms), or null. */
  deleting: number | null;
}

/** `ref`: one reference (a media id and its upload attempt, see MediaRecord.r). */
export type MediaContentMessage = { op: 'ref'; ref: string } | { op: 'unref'; ref: string } | { op: 'purged' };

export interface MediaContentReply {
  refs: number;
  /** unref: the blob has no reference left; delete it from the store, then send `purged`. */
  purge?: boolean;
}

/** What prepare reads: whether the message's reference is in the refs set. */
export interface MediaContentPrepared {
  member: boolean;
}

export const DELETING_TIMEOUT_MS = 60_000;

export function emptyContent(sha256: string): MediaContentState {
  return { sha256, refs: 0, deleting: null };
}

export function decideMediaContent(state: MediaContentState, msg: ActorMessage<MediaContentMessage>, prepared: MediaContentPrepared): Decision<MediaContentState, MediaContentReply> {
  const body = msg.body;
  const refsKey = mediaData.contentRefs(state.sha256);
  switch (body?.op) {
    case 'ref': {
      if (typeof body.ref !== 'string' || !body.ref) throw new ActorRejection('M_INVALID_PARAM', 'ref must be a string', 400);
      if (state.deleting !== null && msg.enqueuedAt - state.deleting < DELETING_TIMEOUT_MS) throw new ActorRejection('M_UNKNOWN', 'This content is being deleted; retry', 503);
      if (prepared.member) return state.deleting === null ? { state, reply: { refs: state.refs } } : { state: { ...state, deleting: null }, reply: { refs: state.refs } };
      return { state: { ...state, refs: state.refs + 1, deleting: null }, reply: { refs: state.refs + 1 }, writes: [{ cmd: 'SADD', key: refsKey, args: [body.ref] }] };
    }
    case 'unref': {
      if (!prepared.member) return { state, reply: { refs: state.refs } };
      const refs = Math.max(0, state.refs - 1);
      const purge = refs === 0;
      return { state: { ...state, refs, deleting: purge ? msg.enqueuedAt : state.deleting }, reply: { refs, ...(purge ? { purge } : {}) }, writes: [{ cmd: 'SREM', key: refsKey, args: [body.ref] }] };
    }
    case 'purged': {
      if (state.refs > 0 || state.deleting === null) return { state, reply: { refs: state.refs } };
      return { state: { ...state, deleting: null }, reply: { refs: 0 } };
    }
    default:
      throw new TypeError(`media-content: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

async function prepareMediaContent(ctx: ShellContext, state: MediaContentState, msg: ActorMessage<MediaContentMessage>): Promise<MediaContentPrepared> {
  const body = msg.body;
  if (body?.op !== 'ref' && body?.op !== 'unref') return { member: false };
  if (typeof body.ref !== 'string') return { member: false };
  return { member: (await ctx.redis.sismember(ctx.keys.data(mediaData.contentRefs(state.sha256)), body.ref)) === 1 };
}

export function mediaContentActor(): ActorKind<MediaContentState, MediaContentMessage, MediaContentReply, MediaContentPrepared> {
  return {
    kind: 'media-content',
    family: 'user',
    initialState: emptyContent,
    prepare: prepareMediaContent,
    decide: decideMediaContent,
  };
}
