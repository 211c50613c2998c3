/**
 * The one place the inbound tunnel turns a refusal or a failure of a stream into what the peer sees:
 * a status, a short reason, a correlation id, and (for policy denials) the deciding policy and rule.
 * Every peer here is authenticated (the handshake required a verified mesh certificate), so the policy
 * name may be disclosed; the body stays one short line.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { CORRELATION_HEADER, DENIED_BY_HEADER, REASON_HEADER } from '../../core/tunnel-protocol.js';

export interface Refusal {
  readonly status: number;
  /** Stable, short, machine-readable (`policy-denied`, `app-unreachable`, `unknown-port`, ...). */
  readonly reason: string;
  readonly message: string;
  readonly deniedBy?: string;
}

export function refuseStream(stream: ServerHttp2Stream, refusal: Refusal, correlationId: string): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close();
    return;
  }
  const headers: Record<string, string | number> = {
    ':status': refusal.status,
    'content-type': 'text/plain; charset=utf-8',
    [REASON_HEADER]: refusal.reason,
    [CORRELATION_HEADER]: correlationId,
  };
  if (refusal.deniedBy !== undefined) headers[DENIED_BY_HEADER] = refusal.deniedBy;
  try {
    stream.respond(headers);
    stream.end(`${refusal.message} (correlation id ${correlationId})\n`);
  } catch {
    // The peer reset the stream between our check and the write: nothing left to tell it.
    if (!stream.destroyed) stream.destroy();
  }
}
