/**
 * Opens a request stream on the pool for one HTTP request: on a ready session at once when one has room
 * (no promise, the common case), else when a session is ready. `failed` gets whether trying another
 * endpoint is safe: a session that went away between the pool's check and the request sent nothing.
 */
import type { ClientHttp2Stream, ClientSessionRequestOptions, OutgoingHttpHeaders } from 'node:http2';
import type { PoolTarget, SessionPool } from './session-pool.js';

export function openRequestStream(
  pool: Pick<SessionPool, 'openStream' | 'tryOpenStream'>,
  target: PoolTarget,
  headers: OutgoingHttpHeaders,
  options: ClientSessionRequestOptions,
  opened: (stream: ClientHttp2Stream) => void,
  failed: (err: unknown, retryable: boolean) => void,
): void {
  let stream: ClientHttp2Stream | undefined;
  try {
    stream = pool.tryOpenStream(target, headers, options);
  } catch (err) {
    failed(err, true);
    return;
  }
  if (stream !== undefined) {
    opened(stream);
    return;
  }
  pool.openStream(target, headers, options).then(opened, (err: unknown) => failed(err, (err as { retryable?: unknown }).retryable === true));
}
