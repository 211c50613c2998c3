/**
 * Opening one pooled tunnel session (session-pool.ts decides when): TLS 1.3 with the workload's
 * certificate, ALPN h2, SNI naming the destination, a stored ticket resumed when there is one; then the
 * server's identity checked beyond the chain (its SPIFFE ID must name the destination service, so a
 * mis-routed connection is refused rather than trusted), the session window widened, and PINGs sent to
 * keep it alive. What happens next (ready, GOAWAY, closed) is the pool's to decide: it is told through
 * `DialHost`.
 */
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { TrellisError } from '../../../common/errors.js';
import { CODE } from '../../../common/error-codes.js';
import type { ProxyLimits } from '../../core/limits.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import { checkPeer, type PeerCheck } from '../../core/peer-identity.js';
import type { TlsMaterial } from '../../core/tls-material.js';
import { TUNNEL_ALPN } from '../../core/tunnel-protocol.js';
import { formatAuthority } from '../../core/destination.js';
import type { IngressTransport } from './ingress-transport.js';
import type { PooledSession, SessionGroup } from './session-group.js';

/** What a dial needs of the pool, and how it tells the pool what became of the session. */
export interface DialHost {
  readonly limits: ProxyLimits;
  readonly trustDomain: string;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
  readonly maxStreams: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveTimeoutMs: number;
  /** The identity in force now, and its generation (bumped by every new identity). */
  material(): TlsMaterial;
  generation(): number;
  /** The session passed the identity check and may carry streams. */
  sessionReady(group: SessionGroup, pooled: PooledSession, resumed: boolean): void;
  /** The peer sent GOAWAY: the session takes no new streams. */
  sessionGoingAway(group: SessionGroup, pooled: PooledSession): void;
  /** No session could be dialled at all (the endpoint's trust domain is not one we federate with). */
  dialRefused(group: SessionGroup): void;
  /** The session closed, ready before (`pooled.ready`) or never. */
  sessionClosed(group: SessionGroup, pooled: PooledSession): void;
  /** Records our record of each session, for `isCurrent`. */
  track(session: ClientHttp2Session, pooled: PooledSession): void;
  /** The outer sessions to other zones' ingresses (endpoints with `ingress` set are dialled through them). */
  readonly ingress: IngressTransport;
}

/** Dials one more session of `group` (counted in `group.connecting` until it connects or closes). */
export function dialSession(group: SessionGroup, host: DialHost): void {
  const generation = host.generation();
  const material = host.material();
  // Verified against the roots of the endpoint's trust domain alone (ours unless it says otherwise).
  const destinationTrustDomain = group.target.endpoint.trustDomain ?? host.trustDomain;
  const context = destinationTrustDomain === host.trustDomain ? material.clientContext : material.federation.clientContext(destinationTrustDomain);
  if (context === undefined) {
    handshakeRefused(group, host, 'trust-domain-not-federated', `${group.host}:${group.port} is of trust domain ${destinationTrustDomain}, which this sidecar does not federate with`);
    host.dialRefused(group);
    return;
  }
  group.connecting += 1;
  const limits = host.limits;
  let tlsSocket: TLSSocket | undefined;
  // On a resumed session node:tls exposes no peer certificate on the client side; the server proved it
  // holds the ticket of a session whose certificate we verified, so that verified identity carries over.
  const resumable = group.ticket?.source.peer !== undefined && group.ticket.source.peer.notAfterMs > Date.now() ? group.ticket : undefined;
  const session = h2connect(`https://${group.host}:${group.port}`, {
    createConnection: () => {
      tlsSocket = tlsConnection(group, context, resumable?.data, host.ingress);
      tlsSocket.on('session', (ticket: Buffer) => {
        if (generation !== host.generation()) return;
        // A ticket from a resumed session inherits the identity verified when the chain began.
        group.ticket = { data: ticket, source: pooled.peer === undefined && resumable !== undefined ? resumable.source : pooled };
      });
      return tlsSocket;
    },
    settings: { enablePush: false, initialWindowSize: limits.streamWindowBytes, maxHeaderListSize: limits.maxHeaderListSize },
    maxSessionMemory: limits.maxSessionMemoryMb,
    maxHeaderListPairs: 256,
  });
  const pooled: PooledSession = { session, generation, ready: false, draining: false, active: 0, streamLimit: host.maxStreams };
  host.track(session, pooled);
  session.on('remoteSettings', (settings) => {
    pooled.streamLimit = Math.min(host.maxStreams, settings.maxConcurrentStreams ?? host.maxStreams);
  });
  group.sessions.push(pooled);
  let pending = true;
  const settleConnecting = (): void => {
    if (!pending) return;
    pending = false;
    group.connecting = Math.max(0, group.connecting - 1);
  };
  let pingTimer: NodeJS.Timeout | undefined;
  const connectTimer = setTimeout(() => {
    session.destroy(new TrellisError(CODE.TUNNEL_CONNECT_TIMEOUT, `no tunnel session to ${group.host}:${group.port} within ${limits.tunnelConnectTimeoutMs} ms`, { side: 'upstream', retryable: true }));
  }, limits.tunnelConnectTimeoutMs);
  connectTimer.unref();

  session.once('connect', () => {
    clearTimeout(connectTimer);
    settleConnecting();
    const inherited = tlsSocket?.isSessionReused() === true && tlsSocket.getPeerX509Certificate() === undefined ? resumable?.source.peer : undefined;
    const check: PeerCheck | undefined = inherited !== undefined ? { ok: true, peer: inherited } : tlsSocket === undefined ? undefined : checkPeer(tlsSocket, destinationTrustDomain);
    if (!acceptPeer(group, host, check)) {
      session.destroy();
      return;
    }
    pooled.peer = (check as Extract<PeerCheck, { ok: true }>).peer;
    pooled.ready = true;
    try {
      session.setLocalWindowSize(limits.sessionWindowBytes);
    } catch {
      // The session closed in between; its 'close' handler cleans up.
    }
    pingTimer = setInterval(() => ping(session, host), host.keepaliveIntervalMs);
    pingTimer.unref();
    host.sessionReady(group, pooled, tlsSocket?.isSessionReused() === true);
  });
  session.on('goaway', () => host.sessionGoingAway(group, pooled));
  session.on('error', (err: Error) => {
    host.log.debug({ endpoint: group.key, err: err.message }, 'tunnel session error');
  });
  session.once('close', () => {
    clearTimeout(connectTimer);
    if (pingTimer !== undefined) clearInterval(pingTimer);
    const i = group.sessions.indexOf(pooled);
    if (i >= 0) group.sessions.splice(i, 1);
    if (!pooled.ready) settleConnecting();
    host.sessionClosed(group, pooled);
  });
}

/** TLS 1.3 to the group's endpoint (directly or through its zone's ingress) with our certificate, ALPN h2, SNI naming the destination, a ticket to resume. */
function tlsConnection(group: SessionGroup, context: SecureContext, ticket: Buffer | undefined, ingress: IngressTransport): TLSSocket {
  const via = group.target.endpoint.ingress;
  const { service, namespace, port } = group.target;
  const socket = tlsConnect({
    // Another zone's endpoint: the same TLS, end to end with the destination sidecar, inside a CONNECT
    // stream through that zone's ingress (ingress-transport.ts), which sees only ciphertext.
    ...(via === undefined ? { host: group.host, port: group.port } : { socket: ingress.open(group.target.endpoint.zone, via.address, via.port, formatAuthority({ service, namespace, port }), group.target.endpoint.trustDomain) }),
    servername: group.sni,
    secureContext: context,
    ALPNProtocols: [TUNNEL_ALPN],
    minVersion: 'TLSv1.3',
    session: ticket,
    // Identity is a SPIFFE URI, not a DNS name: the chain is checked by node:tls, the ID by checkPeer.
    checkServerIdentity: () => undefined,
  });
  if (via === undefined) socket.setNoDelay(true);
  return socket;
}

/** The server's identity: verified, and the destination service's (else the handshake is counted as refused). */
function acceptPeer(group: SessionGroup, host: DialHost, check: PeerCheck | undefined): boolean {
  if (check === undefined || !check.ok) {
    handshakeRefused(group, host, check?.reason ?? 'no-socket', check?.message ?? 'no TLS socket');
    return false;
  }
  const expected = group.target;
  if (check.peer.service !== expected.service || check.peer.namespace !== expected.namespace) {
    handshakeRefused(group, host, 'wrong-peer', `${group.host}:${group.port} presented ${check.peer.spiffeId}, expected ${expected.namespace}/${expected.service}`);
    return false;
  }
  return true;
}

function handshakeRefused(group: SessionGroup, host: DialHost, reason: string, message: string): void {
  host.metrics.tunnelHandshakes.inc({ direction: 'outbound', result: 'failed', reason });
  host.log.warn({ endpoint: group.key, reason }, `tunnel handshake refused: ${message}`);
}

/** One keepalive PING; no answer within the timeout ends the session. */
function ping(session: ClientHttp2Session, host: DialHost): void {
  if (session.closed || session.destroyed) return;
  const timer = setTimeout(() => {
    host.metrics.tunnelErrors.inc({ direction: 'outbound', reason: 'keepalive-timeout' });
    session.destroy(new TrellisError(CODE.TUNNEL_KEEPALIVE_TIMEOUT, `no PING answer within ${host.keepaliveTimeoutMs} ms`, { side: 'upstream' }));
  }, host.keepaliveTimeoutMs);
  timer.unref();
  try {
    session.ping(() => clearTimeout(timer));
  } catch {
    clearTimeout(timer);
  }
}
