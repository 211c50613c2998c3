/**
 * One HTTP/2 response passed from an upstream stream (the tunnel, or the app's h2c connection) to a
 * downstream one (the app's stream, or the tunnel), with trailers, flow control and the mesh's failures.
 *
 * - Headers go on as they came (`responseFields`), with END_STREAM when the upstream had it (a gRPC
 *   Trailers-Only response stays one); otherwise the downstream waits for trailers, which are those the
 *   upstream sent (`grpc-status`, `grpc-message`) or, when it sent none, an empty set ending the stream.
 * - The body is piped (window updates follow consumption, so a slow reader slows the writer end to end);
 *   a reset upstream never ends the downstream cleanly (`pipeUntilCleanEnd`).
 * - A failure before the headers is answered whole: a gRPC Trailers-Only status on gRPC calls, else the
 *   HTTP failure response. After the headers, a gRPC call ends with a status in its trailers (UNAVAILABLE,
 *   DEADLINE_EXCEEDED, PERMISSION_DENIED: what gRPC clients report), anything else is reset
 *   (INTERNAL_ERROR), so a cut response never looks complete.
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { failureBody, failureHeaders, type HttpFailure } from '../http/errors.js';
import { failStream, pipeUntilCleanEnd } from '../core/stream-reset.js';
import { encodeGrpcMessage, grpcFailureHeaders, grpcStatusOfFailure } from './grpc.js';
import { responseFields, trailerFields } from './headers.js';

export class ResponseRelay {
  /** The status the downstream got (0: none yet). */
  status = 0;
  /** The gRPC status sent downstream, from the upstream's trailers or the mesh's own; undefined when none. */
  grpcStatus: string | undefined;
  private trailers: OutgoingHttpHeaders | undefined;
  private upstream: ClientHttp2Stream | undefined;

  constructor(
    readonly down: ServerHttp2Stream,
    readonly grpc: boolean,
    /** At the inbound: the app's `trellis-*` fields are dropped. */
    readonly dropMesh: boolean,
  ) {}

  get responded(): boolean {
    return this.status !== 0;
  }

  /**
   * Relays the upstream's response from its headers on; `flags` are those of its HEADERS frame (a client
   * stream's `endAfterHeaders` is not set for responses, so END_STREAM is read from them).
   */
  start(up: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
    const { down } = this;
    if (down.destroyed || down.closed) return;
    this.upstream = up;
    this.status = Number(headers[':status']);
    const out = responseFields(headers, this.dropMesh);
    const ended = (flags & h2.NGHTTP2_FLAG_END_STREAM) !== 0;
    if (ended) this.noteGrpcStatus(headers['grpc-status']);
    up.once('trailers', (trailers: IncomingHttpHeaders) => {
      this.trailers ??= trailerFields(trailers, false, this.dropMesh);
      this.noteGrpcStatus(trailers['grpc-status']);
    });
    down.respond(out, { endStream: ended, waitForTrailers: !ended });
    if (ended) return;
    down.once('wantTrailers', () => {
      if (!down.destroyed && !down.closed) down.sendTrailers(this.trailers ?? {});
    });
    pipeUntilCleanEnd(up, down);
  }

  /** Interim (1xx) headers from upstream. */
  interim(headers: IncomingHttpHeaders): void {
    const status = Number(headers[':status']);
    if (this.responded || this.down.destroyed || status < 100 || status >= 200 || status === 101) return;
    try {
      this.down.additionalHeaders({ ':status': status });
    } catch {
      // The stream closed in between; its 'close' handler accounts for it.
    }
  }

  /** Ends the downstream with a mesh failure, whatever was already sent. */
  fail(failure: HttpFailure, correlationId: string, extra?: OutgoingHttpHeaders): void {
    const { down } = this;
    if (down.destroyed || down.closed) return;
    if (!this.responded && !down.headersSent) {
      if (this.grpc) {
        const headers = grpcFailureHeaders(failure, correlationId, extra);
        this.status = 200;
        this.grpcStatus = headers['grpc-status'] as string;
        down.respond(headers, { endStream: true });
      } else {
        const body = failureBody(failure, correlationId);
        const headers = { ...failureHeaders(failure, correlationId, body, true), ...extra };
        this.status = failure.status;
        down.respond(headers);
        down.end(body);
      }
      stopReading(down);
      return;
    }
    if (!this.grpc || down.writableEnded) {
      failStream(down);
      return;
    }
    // Mid-response on a gRPC call: the status goes in the trailers, which replace any the upstream may send.
    const status = grpcStatusOfFailure(failure);
    this.trailers = { 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(`${failure.message} [${failure.code}] (correlation id ${correlationId})`) };
    this.grpcStatus = String(status);
    if (this.upstream !== undefined) this.upstream.unpipe(down);
    down.end();
  }

  private noteGrpcStatus(value: string | string[] | undefined): void {
    if (typeof value === 'string' && this.grpcStatus === undefined) this.grpcStatus = value;
  }
}

/** After a complete early answer, a request body still arriving is refused with RST_STREAM(NO_ERROR) (RFC 9113 8.1). */
export function stopReading(stream: ServerHttp2Stream): void {
  if (stream.endAfterHeaders || stream.readableEnded) return;
  stream.once('finish', () => {
    if (!stream.destroyed && !stream.readableEnded) stream.close(h2.NGHTTP2_NO_ERROR);
  });
}
