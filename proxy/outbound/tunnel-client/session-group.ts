/**
 * What the session pool (session-pool.ts) keeps per destination: a group of mTLS HTTP/2 sessions to one
 * endpoint for one service port (one SNI), the callers waiting for a session, and the last TLS ticket.
 */
import type { ClientHttp2Session } from 'node:http2';
import type { Endpoint } from '../../../api/data-plane.js';
import { encodeSni } from '../../../api/sni.js';
import { TrellisError } from '../../../common/errors.js';
import { CODE } from '../../../common/error-codes.js';
import { dialAddress } from '../../core/destination.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';

/** A destination endpoint plus the service it is dialled for (named in SNI, checked against the server's ID). */
export interface PoolTarget {
  readonly endpoint: Endpoint;
  readonly service: string;
  readonly namespace: string;
  /** The destination port the session is opened for (in SNI). */
  readonly port: number;
}

export interface PooledSession {
  readonly session: ClientHttp2Session;
  readonly generation: number;
  ready: boolean;
  draining: boolean;
  active: number;
  /** Streams allowed at once: our bound or the peer's SETTINGS_MAX_CONCURRENT_STREAMS, whichever is lower. */
  streamLimit: number;
  peer?: VerifiedPeer;
}

export interface Waiter {
  resolve(session: PooledSession): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface SessionGroup {
  readonly key: string;
  readonly target: PoolTarget;
  readonly sni: string;
  readonly host: string;
  readonly port: number;
  readonly sessions: PooledSession[];
  connecting: number;
  failures: number;
  retryTimer: NodeJS.Timeout | undefined;
  /** The last TLS session ticket, with the server identity verified on the full handshake that issued it. */
  ticket: { readonly data: Buffer; readonly source: PooledSession } | undefined;
  waiters: Waiter[];
  retained: boolean;
}

/**
 * A new, empty group for `target`, keyed by where it dials and what SNI names; `callerTrustDomain` is our
 * trust domain's SNI label, given only when the endpoint is of another trust domain (api/sni.ts).
 */
export function newGroup(target: PoolTarget, callerTrustDomain?: string): SessionGroup {
  const sni = encodeSni({ service: target.service, namespace: target.namespace, port: target.port, zone: target.endpoint.zone, ...(callerTrustDomain === undefined ? {} : { callerTrustDomain }) });
  const dial = dialAddress(target.endpoint);
  return {
    key: groupKey(dial.host, dial.port, sni),
    target,
    sni,
    host: dial.host,
    port: dial.port,
    sessions: [],
    connecting: 0,
    failures: 0,
    retryTimer: undefined,
    ticket: undefined,
    waiters: [],
    retained: false,
  };
}

export function groupKey(host: string, port: number, sni: string): string {
  return `${host}:${port}/${sni}`;
}

/** Whether `group` serves `target` (same endpoint object assumed): same service, namespace and port. */
export function servesTarget(group: SessionGroup, target: PoolTarget): boolean {
  const t = group.target;
  return t.port === target.port && t.service === target.service && t.namespace === target.namespace;
}

export function unreachable(group: SessionGroup, why: string): TrellisError {
  return new TrellisError(CODE.TUNNEL_UNREACHABLE, `cannot open a tunnel session to ${group.host}:${group.port} (${group.target.namespace}/${group.target.service}): ${why}`, {
    side: 'upstream',
    retryable: true,
  });
}

/** Fails every caller waiting for a session of the group. */
export function rejectWaiters(group: SessionGroup, err: Error): void {
  const waiters = group.waiters.splice(0);
  for (const w of waiters) {
    clearTimeout(w.timer);
    w.reject(err);
  }
}

/** Closes a session gracefully: its streams may finish within `graceMs`, then it is destroyed. */
export function closeSession(session: ClientHttp2Session, graceMs: number): Promise<void> {
  if (session.destroyed) return Promise.resolve();
  // Still in its handshake: no stream can be on it, and node:http2's close() on a connecting session marks it
  // destroyed without ever closing its socket or emitting 'close' (so the grace timer's destroy() would be a
  // no-op and this would wait forever). Destroying it now closes the socket and emits 'close'.
  if (session.connecting) {
    session.destroy();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => session.destroy(), graceMs);
    timer.unref();
    session.close(() => {
      clearTimeout(timer);
      resolve();
    });
    session.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
