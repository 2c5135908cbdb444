/**
 * A request body streamed to its handler as it arrives (uploads): uWS hands over chunks in
 * `onData`, valid only during the callback, so each is copied into a queue the handler drains
 * through an async iterator. When more than HIGH_WATER bytes wait unread, the socket is paused
 * (`res.pause()`: the kernel stops acknowledging, the client slows down) and resumed once the
 * handler is down to LOW_WATER, so a body of any size costs at most about HIGH_WATER of memory.
 */
import type uWS from 'uWebSockets.js';
import { MatrixError, errors } from './errors';

const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

export class IncomingBody implements AsyncIterable<Uint8Array> {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private received = 0;
  private paused = false;
  /** The last chunk arrived. */
  ended = false;
  private failure: Error | null = null;
  /** The handler stopped caring (answered already): drop what still arrives. */
  private discarded = false;
  private wake: (() => void) | null = null;
  private iterating = false;

  constructor(
    private readonly res: uWS.HttpResponse,
    private readonly maxBytes: number,
    private readonly onEnd: () => void,
  ) {}

  /** A chunk from `onData`. Returns the error to answer with when the body is too large. */
  push(chunk: ArrayBuffer, isLast: boolean): MatrixError | null {
    if (this.failure || this.discarded) return null;
    this.received += chunk.byteLength;
    if (this.received > this.maxBytes) {
      const err = errors.tooLarge(`Request body exceeds ${this.maxBytes} bytes`);
      this.fail(err);
      this.unpause();
      return err;
    }
    if (chunk.byteLength > 0) {
      this.queue.push(Buffer.from(new Uint8Array(chunk).slice()));
      this.queued += chunk.byteLength;
    }
    if (isLast) {
      this.ended = true;
      this.onEnd();
    } else if (this.queued > HIGH_WATER && !this.paused) {
      this.paused = true;
      this.res.pause();
    }
    this.notify();
    return null;
  }

  /** The client went away: the reader gets an error. */
  abort(): void {
    // The response is gone: it must not be resumed or touched any more.
    this.paused = false;
    if (!this.ended) this.fail(new Error('The client closed the connection before the body arrived'));
  }

  /** The answer went out: nothing reads the rest (the connection closes after the answer). */
  discard(): void {
    this.discarded = true;
    this.queue.length = 0;
    this.queued = 0;
    this.unpause();
  }

  /** A paused socket is not written to either: resume it before the answer goes out. */
  private unpause(): void {
    if (!this.paused) return;
    this.paused = false;
    this.res.resume();
  }

  private fail(err: Error): void {
    this.failure = err;
    this.queue.length = 0;
    this.queued = 0;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterating) throw new Error('A request body can be read once');
    this.iterating = true;
    for (;;) {
      if (this.failure) throw this.failure;
      const next = this.queue.shift();
      if (next) {
        this.queued -= next.byteLength;
        if (this.queued <= LOW_WATER && !this.discarded) this.unpause();
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}
