/**
 * Connections on the tunnel port that have not finished their TLS handshake: unauthenticated, so they get
 * a pool of their own (`maxHandshakes`) apart from the sessions of verified peers, and a cap per source
 * address (`maxHandshakesPerAddress`). A stalled handshake then costs a place in this pool until the
 * handshake deadline (node:tls `handshakeTimeout`) cuts it, never the place of an authenticated session, and
 * one source stalling handshakes leaves the rest of the pool to other sources.
 *
 * A connection enters at TCP accept and leaves when its TLS handshake completes (the session, if any, is then
 * admitted by inbound/tunnel/session-admission.ts) or when it closes. The TLS socket of a completed handshake is kept until
 * the HTTP/2 session takes it, because the session exposes only a proxy of its socket that cannot destroy it.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

export type HandshakeRefusal = 'handshakes-full' | 'handshakes-per-address';

export interface HandshakePoolLimits {
  readonly maxHandshakes: number;
  readonly maxHandshakesPerAddress: number;
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are one source. */
export function sourceAddress(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** One TCP connection, as both the raw and the TLS socket know it. */
function connectionKey(socket: { readonly remoteAddress?: string; readonly remotePort?: number }): string {
  return `${sourceAddress(socket.remoteAddress)}|${socket.remotePort ?? 0}`;
}

export class HandshakePool {
  private readonly pending = new Map<string, Socket>();
  private readonly perAddress = new Map<string, number>();
  /** Completed handshakes whose TLS socket the session has not taken yet. */
  private readonly established = new Map<string, TLSSocket>();
  /** Sockets this pool refused: node:tls reports their end as a failed handshake, which it was not. */
  private readonly refusedSockets = new WeakSet<object>();

  constructor(
    private readonly limits: HandshakePoolLimits,
    private readonly onChange: (pending: number) => void,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  /**
   * A server's 'connection' listener (the tunnel port, a zone ingress): quiets plain TCP errors before TLS
   * starts (resets during accept must not reach the process), then `admit`s, or destroys the socket when the
   * server is `stopping`. Returns why it was refused, if it was.
   */
  accept(socket: Socket, stopping: boolean): HandshakeRefusal | 'stopping' | undefined {
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    if (!stopping) return this.admit(socket);
    socket.destroy();
    return 'stopping';
  }

  /** At TCP accept, before any TLS byte: takes a place for the socket or destroys it and says why. */
  admit(socket: Socket): HandshakeRefusal | undefined {
    const address = sourceAddress(socket.remoteAddress);
    const fromAddress = this.perAddress.get(address) ?? 0;
    const refusal: HandshakeRefusal | undefined = this.pending.size >= this.limits.maxHandshakes ? 'handshakes-full' : fromAddress >= this.limits.maxHandshakesPerAddress ? 'handshakes-per-address' : undefined;
    if (refusal !== undefined) {
      this.refusedSockets.add(socket);
      socket.destroy();
      return refusal;
    }
    const key = connectionKey(socket);
    this.pending.set(key, socket);
    this.perAddress.set(address, fromAddress + 1);
    this.onChange(this.pending.size);
    socket.once('close', () => {
      this.leave(key, socket);
      this.established.delete(key);
    });
    return undefined;
  }

  /** The handshake completed: the connection is no longer unauthenticated (a session check follows). */
  completed(tls: TLSSocket): void {
    const key = connectionKey(tls);
    const raw = this.pending.get(key);
    if (raw !== undefined) this.leave(key, raw);
    this.established.set(key, tls);
    tls.once('close', () => {
      if (this.established.get(key) === tls) this.established.delete(key);
    });
  }

  /** The TLS socket behind a session's socket proxy, handed over once. */
  takeSocket(proxy: { readonly remoteAddress?: string; readonly remotePort?: number }): TLSSocket | undefined {
    const key = connectionKey(proxy);
    const tls = this.established.get(key);
    this.established.delete(key);
    return tls;
  }

  /**
   * Whether node:tls reports the end of a socket this pool refused. The TLS socket wraps the refused TCP one
   * as `_parent` (node internals; were it gone, such a refusal would also count as a `reset` handshake).
   */
  wasRefused(tls: TLSSocket): boolean {
    const parent = (tls as unknown as { _parent?: unknown })._parent;
    return typeof parent === 'object' && parent !== null && this.refusedSockets.has(parent);
  }

  /** Shutdown: unauthenticated connections get no grace period. */
  destroyAll(): void {
    for (const socket of [...this.pending.values()]) socket.destroy();
  }

  private leave(key: string, socket: Socket): void {
    if (this.pending.get(key) !== socket) return;
    this.pending.delete(key);
    const address = key.slice(0, key.lastIndexOf('|'));
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left <= 0) this.perAddress.delete(address);
    else this.perAddress.set(address, left);
    this.onChange(this.pending.size);
  }
}
