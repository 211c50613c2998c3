/**
 * The request body of one app HTTP/2 stream, kept while the request may still go to another endpoint:
 * a retry after bytes were sent (a gRPC call always sends its message at once) must send them again.
 *
 * Bounded, as Linkerd and Envoy bound theirs: once more than `RETRY_BODY_LIMIT_BYTES` has been read the
 * copy is dropped and the request is no longer retried after it was sent (`intact` false). Nothing is
 * copied: the chunks node hands to the pipe are kept by reference. The body is read from the app only
 * once a tunnel stream is attached (`sendTo`), so nothing is read that could not be kept or sent.
 */
import type { ClientHttp2Stream, ServerHttp2Stream } from 'node:http2';
import { constants as h2 } from 'node:http2';
import { pipeUntilCleanEnd } from '../../core/stream-reset.js';

/** Request bodies up to this size may be sent again on a retry (Linkerd's limit for retryable requests). */
export const RETRY_BODY_LIMIT_BYTES = 64 * 1024;

export class RequestReplay {
  private chunks: Buffer[] = [];
  private bytes = 0;
  private capturing = false;
  /** Every body byte read so far is kept: the request can be sent again. */
  intact = true;

  constructor(
    private readonly down: ServerHttp2Stream,
    private readonly limit: number = RETRY_BODY_LIMIT_BYTES,
  ) {}

  private readonly onData = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) this.stop();
    else this.chunks.push(chunk);
  };

  /** Starts `up`'s body: what was kept (on a retry), then the rest as the app sends it, with backpressure. */
  sendTo(up: ClientHttp2Stream): void {
    if (!this.capturing && this.intact && this.bytes === 0) {
      // Before the pipe's own listener: both see every chunk from the first on.
      this.down.on('data', this.onData);
      this.capturing = true;
    }
    for (const chunk of this.chunks) up.write(chunk);
    const { down } = this;
    if (down.readableEnded) {
      const rst = down.rstCode;
      if (rst === undefined || rst === h2.NGHTTP2_NO_ERROR) up.end();
      return;
    }
    pipeUntilCleanEnd(down, up);
  }

  /** No more retries for this request (a response is on its way, or the body outgrew the limit): let the copy go. */
  stop(): void {
    if (this.capturing) this.down.off('data', this.onData);
    this.capturing = false;
    this.intact = false;
    this.chunks = [];
  }
}
