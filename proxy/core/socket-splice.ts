/**
 * Joins two TCP sockets into one connection, both ways, for the paths that carry bytes without a tunnel:
 * transparent capture's passthrough to a destination outside the mesh (outbound) and the permissive
 * hand-off of a plaintext caller to the app (inbound). Same semantics as `splice` (the tunnel variant):
 *
 * - Backpressure: `pipe` pauses the reader when the writer's buffer is full; buffers pass through uncopied.
 * - Half-close: a FIN one way ends that direction only (both sockets need `allowHalfOpen: true`).
 * - Resets: an error on one side resets the other (`resetAndDestroy`), so neither sees a clean end that
 *   was not one.
 * - Idle: no byte either way for `idleTimeoutMs` closes both (every byte crosses `client`, so its timer
 *   sees both directions).
 *
 * `onEnd` runs exactly once, after both sockets closed.
 */
import type { Socket } from 'node:net';

/** How the connection ended: `ok` for FIN both ways; the others say which side broke it. */
export type SocketSpliceResult = 'ok' | 'client-reset' | 'upstream-reset' | 'idle-timeout' | 'cut';

export interface SocketSpliceHandle {
  /** Ends the connection now (shutdown): resets both sides. */
  cut(): void;
}

export function spliceSockets(client: Socket, upstream: Socket, idleTimeoutMs: number, onEnd: (result: SocketSpliceResult) => void): SocketSpliceHandle {
  let result: SocketSpliceResult | undefined;
  let open = 2;
  const settle = (): void => {
    open -= 1;
    if (open === 0) onEnd(result ?? 'ok');
  };
  const fail = (why: SocketSpliceResult, other: Socket): void => {
    result ??= why;
    if (!other.destroyed) resetSocket(other);
  };
  client.on('error', () => fail('client-reset', upstream));
  upstream.on('error', () => fail('upstream-reset', client));
  // A socket closed by the peer's RST without an 'error' (already ended) must still take the other down.
  client.once('close', (hadError) => {
    if (hadError) fail('client-reset', upstream);
    settle();
  });
  upstream.once('close', (hadError) => {
    if (hadError) fail('upstream-reset', client);
    settle();
  });
  if (idleTimeoutMs > 0) {
    client.setTimeout(idleTimeoutMs, () => {
      result ??= 'idle-timeout';
      client.destroy();
      upstream.destroy();
    });
  }
  client.pipe(upstream);
  upstream.pipe(client);
  return {
    cut(): void {
      result ??= 'cut';
      if (!client.destroyed) resetSocket(client);
      if (!upstream.destroyed) resetSocket(upstream);
    },
  };
}

/** A TCP RST rather than a FIN, so the peer sees a broken connection, not a complete one. */
export function resetSocket(socket: Socket): void {
  if (typeof socket.resetAndDestroy === 'function' && socket.readyState !== 'opening' && !socket.destroyed) socket.resetAndDestroy();
  else socket.destroy();
}
