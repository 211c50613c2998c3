/**
 * Refusing a tunnel stream before any app byte moved: a status, a stable code and its short reason, a
 * correlation id, and (for policy denials) the deciding policy and rule. The answer's shape comes from the
 * one translation of errors into what a peer sees (http/errors.ts); this adds only the stream handling.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { failureBody, HttpFailure, streamRefusalHeaders, type HttpFailureKind } from '../../http/errors.js';

export function refuseStream(stream: ServerHttp2Stream, kind: HttpFailureKind, detail: string, correlationId: string, deniedBy?: string): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close();
    return;
  }
  const failure = new HttpFailure(kind, detail);
  const body = failureBody(failure, correlationId);
  try {
    stream.respond(streamRefusalHeaders(failure, correlationId, body, deniedBy));
    stream.end(body);
  } catch {
    // The peer reset the stream between our check and the write: nothing left to tell it.
    if (!stream.destroyed) stream.destroy();
  }
}
