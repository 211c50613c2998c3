/**
 * The request body of one app HTTP/2 stream as the tries and the mirror see it: kept while the request may
 * still go to another endpoint (a retry after bytes were sent, and a gRPC call always sends its message at
 * once, must send them again), and copied to a mirror when the route asks for one.
 *
 * Bounded, as Linkerd and Envoy bound theirs: once more than `RETRY_BODY_LIMIT_BYTES` has been read the
 * copy is dropped and the request is no longer retried after it was sent (`intact` false). Nothing is
 * copied: the chunks node hands to the pipe are kept by reference. The body is read from the app only
 * once a tunnel stream is attached (`sendTo`), so nothing is read that could not be kept or sent; the
 * mirror gets each chunk as it is read and never slows the pipe (mirror.ts gives up instead).
 */
import type { ClientHttp2Stream, ServerHttp2Stream } from 'node:http2';
import { constants as h2 } from 'node:http2';
import { pipeUntilCleanEnd } from '../../core/stream-reset.js';
import type { MirrorCopy } from '../traffic/mirror.js';

/** Request bodies up to this size may be sent again on a retry (Linkerd's limit for retryable requests). */
export const RETRY_BODY_LIMIT_BYTES = 64 * 1024;

export class RequestReplay {
  private chunks: Buffer[] = [];
  private bytes = 0;
  private listening = false;
  /** Every body byte read so far is kept: the request can be sent again. */
  intact = true;

  constructor(
    private readonly down: ServerHttp2Stream,
    private mirror: MirrorCopy | undefined,
    private readonly limit: number = RETRY_BODY_LIMIT_BYTES,
  ) {}

  private readonly onData = (chunk: Buffer): void => {
    if (this.mirror !== undefined && !this.mirror.write(chunk)) this.mirror = undefined;
    if (!this.intact) return;
    this.bytes += chunk.length;
    if (this.bytes > this.limit) this.stop();
    else this.chunks.push(chunk);
  };

  private readonly onEnd = (): void => {
    const rst = this.down.rstCode;
    if (rst === undefined || rst === h2.NGHTTP2_NO_ERROR) this.mirror?.end();
    else this.mirror?.abandon();
  };

  /** Starts `up`'s body: what was kept (on a retry), then the rest as the app sends it, with backpressure. */
  sendTo(up: ClientHttp2Stream): void {
    const { down } = this;
    if (!this.listening) {
      // Before the pipe's own listener: both see every chunk from the first on.
      this.listening = true;
      down.on('data', this.onData);
      down.once('end', this.onEnd);
    }
    for (const chunk of this.chunks) up.write(chunk);
    if (down.readableEnded) {
      const rst = down.rstCode;
      if (rst === undefined || rst === h2.NGHTTP2_NO_ERROR) up.end();
      return;
    }
    pipeUntilCleanEnd(down, up);
  }

  /** No more retries for this request (a response is on its way, or the body outgrew the limit): let the copy go. */
  stop(): void {
    this.intact = false;
    this.chunks = [];
    if (this.listening && this.mirror === undefined) this.down.off('data', this.onData);
  }
}
