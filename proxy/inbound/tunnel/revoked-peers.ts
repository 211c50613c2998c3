/**
 * Peers whose certificate was revoked: issued through a join token the operator revoked (or renewed from
 * one). The control plane sends their serials with the config; a new tunnel session from one is refused
 * when it starts, before any frame is read (inbound/tunnel/tunnel-server.ts), and sessions already open from one are closed when the list
 * arrives. Each certificate stays on the list only until its notAfter, when the expiry timer of the
 * session (and the TLS chain check) take over. Also here: what else follows from a peer's verified identity
 * once its session stands (the trust domain no longer federated, its zone as a metric label).
 */
import type { ServerHttp2Session } from 'node:http2';
import type { Logger } from 'pino';
import type { ProxyMetrics } from '../../core/metrics.js';
import type { VerifiedPeer } from '../../core/peer-identity.js';
import type { InboundState } from '../inbound-state.js';
import { zoneLabel } from '../../core/zone-label.js';

/** The bounded metric label of a peer's proven zone. */
export function peerZoneLabel(peer: VerifiedPeer): string {
  return zoneLabel(peer.zone);
}

export function isRevokedPeer(state: InboundState, peer: VerifiedPeer): boolean {
  return state.revokedSerials.size > 0 && state.revokedSerials.has(peer.serial);
}

/** Closes every open session whose peer the new state lists as revoked; returns how many. */
export function closeRevokedSessions(sessions: Iterable<ServerHttp2Session>, peerOf: (session: ServerHttp2Session) => VerifiedPeer | undefined, state: InboundState, metrics: ProxyMetrics, log: Logger): number {
  if (state.revokedSerials.size === 0) return 0;
  let closed = 0;
  for (const session of [...sessions]) {
    const peer = peerOf(session);
    if (peer === undefined || !isRevokedPeer(state, peer)) continue;
    closed++;
    metrics.tunnelErrors.inc({ direction: 'inbound', reason: 'peer-certificate-revoked' });
    log.warn({ peer: peer.spiffeId, serial: peer.serial }, 'peer certificate revoked: closing its tunnel session');
    // destroy, not close: a revoked peer gets no grace to finish what it started.
    session.destroy();
  }
  return closed;
}

/**
 * After a trust change: sessions of a trust domain neither ours nor federated any more take no new streams
 * (GOAWAY; open streams finish and stay under the policy in force). Returns how many.
 */
export function closeDefederatedSessions(sessions: Iterable<ServerHttp2Session>, peerOf: (session: ServerHttp2Session) => VerifiedPeer | undefined, trusts: (trustDomain: string) => boolean, log: Logger): number {
  let closed = 0;
  for (const session of [...sessions]) {
    const peer = peerOf(session);
    if (peer === undefined || session.closed || trusts(peer.trustDomain)) continue;
    closed++;
    log.warn({ peer: peer.spiffeId }, "the peer's trust domain is no longer federated: its tunnel session takes no new streams");
    session.close();
  }
  return closed;
}
