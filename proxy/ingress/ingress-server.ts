/**
 * The zone ingress (`trellis ingress run`): the way into a zone for other zones' sidecars.
 *
 * Accept path, as a sidecar's tunnel port (proxy/inbound/tunnel/) and with its parts: TCP accept into the
 * handshake pool (in total and per source address) → TLS 1.3 with a required client certificate, chain
 * checked by node:tls against the roots of exactly one trust domain (ours, or a federated one the caller
 * names in its server name, `t<label>.ingress.trellis`: proxy/core/federated-trust.ts), ALPN h2 only, cut
 * after `handshakeTimeoutMs` → SPIFFE leaf check (of that trust domain) → a place among the sessions (in total, per identity, per address) → the session guard (rapid
 * reset, wedged sessions, GOAWAY with errors) → per stream:
 *
 *   CONNECT <service>.<namespace>:<port>
 *     the caller admitted? (caller-admission.ts: refused identity, zone not admitted)  → 403 + reason
 *     a service of this zone serving that port?                                         → 404 unknown-service
 *     a healthy endpoint answering? (the sidecars' balancer, up to 3 tried)              → 503 no-healthy-endpoint
 *     → 200, and the stream is spliced to a TCP connection to that endpoint's tunnel port.
 *
 * Inside the stream the caller runs TLS with the destination sidecar: the ingress carries ciphertext and
 * never holds a key that could read it; the destination authorizes the caller's own SPIFFE ID. The ingress
 * dials only endpoints in its table (ingress-routes.ts), which only its zone control plane fills.
 */
import { constants as h2, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { createTunnelPortServer } from '../inbound/tunnel/tunnel-port-server.js';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { WorkloadIdentity } from '../../api/data-plane.js';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { listenServer } from '../../common/server-listen.js';
import { nextCorrelationId } from '../core/correlation.js';
import { parseAuthority, type Destination } from '../core/destination.js';
import type { ProxyLimits } from '../core/limits.js';
import { LogSampler } from '../core/log-sampler.js';
import { checkPeer, type VerifiedPeer } from '../core/peer-identity.js';
import { splice } from '../core/splice.js';
import { buildTlsMaterial, type TlsMaterial } from '../core/tls-material.js';
import { STREAM_REFUSALS, streamReason, type HttpFailureKind } from '../http/errors.js';
import { refuseStream } from '../inbound/tcp/stream-refusal.js';
import { handshakeFailureReason } from '../inbound/tunnel/handshake-failure.js';
import { HandshakePool, sourceAddress } from '../inbound/tunnel/handshake-pool.js';
import { SessionAdmission } from '../inbound/tunnel/session-admission.js';
import { SessionGuards } from '../inbound/tunnel/session-guard.js';
import { closeDefederatedSessions } from '../inbound/tunnel/revoked-peers.js';
import type { BalancedEndpoint } from '../outbound/tunnel-client/load-balancer.js';
import { UNKNOWN_ZONE, judgeCaller, type CallerRules } from './caller-admission.js';
import type { IngressMetrics } from './ingress-metrics.js';
import type { IngressRoutes } from './ingress-routes.js';

/** Endpoints tried per stream before answering no-healthy-endpoint. */
export const INGRESS_MAX_ATTEMPTS = 3;

export interface IngressServerOptions {
  readonly trustDomain: string;
  readonly identity: WorkloadIdentity;
  readonly routes: IngressRoutes;
  readonly rules: CallerRules;
  readonly limits: ProxyLimits;
  readonly metrics: IngressMetrics;
  readonly logger: Logger;
}

interface Caller {
  readonly peer: VerifiedPeer;
  readonly zone: string;
}

export class IngressServer {
  private readonly server: Http2SecureServer;
  private readonly sessions = new Set<ServerHttp2Session>();
  /** Each admitted session's verified caller, to close those of a trust domain no longer federated. */
  private readonly peers = new WeakMap<ServerHttp2Session, VerifiedPeer>();
  private readonly streams = new Set<{ cut(): void }>();
  private readonly refusals: LogSampler;
  private readonly handshakes: HandshakePool;
  private readonly admission: SessionAdmission;
  private readonly guards: SessionGuards;
  private stopping = false;
  /** Our identity's TLS material; its zoneOf proves a caller's zone as a sidecar's tunnel port does. */
  private material: TlsMaterial;

  constructor(private readonly options: IngressServerOptions) {
    this.material = buildTlsMaterial(options.identity);
    const limits = options.limits;
    this.refusals = new LogSampler(options.logger, limits.denialLogIntervalMs);
    this.handshakes = new HandshakePool(limits, () => undefined);
    this.admission = new SessionAdmission(limits);
    this.guards = new SessionGuards(limits);
    this.server = createTunnelPortServer(() => this.material, limits, 64);
    this.server.on('session', (session) => this.onSession(session));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => this.onHandshakeError(err, socket));
    this.server.on('unknownProtocol', (socket: TLSSocket) => {
      options.metrics.handshakes.inc({ result: 'failed', reason: 'no-alpn-h2' });
      socket.destroy();
    });
    this.server.prependListener('connection', (socket: Socket) => this.onConnection(socket));
    this.server.prependListener('secureConnection', (socket: TLSSocket) => this.handshakes.completed(socket));
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    try {
      return await listenServer(this.server, port, host);
    } catch (err) {
      throw new TrellisError(CODE.TUNNEL_LISTEN_FAILED, `cannot listen on ${host}:${port} for the zone ingress: ${(err as Error).message}`, { side: 'input', cause: err });
    }
  }

  address(): AddressInfo | undefined {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? a : undefined;
  }

  /** New handshakes present the new certificate and trust the new bundle (and federated bundles); open sessions are untouched. */
  setIdentity(identity: WorkloadIdentity): void {
    const material = buildTlsMaterial(identity);
    this.material = material;
    this.server.setSecureContext({ ...material.options });
    // As a tunnel port: callers of a trust domain no longer federated take no new streams (GOAWAY).
    closeDefederatedSessions(this.sessions, (s) => this.peers.get(s), (td) => td === material.trustDomain || material.federation.has(td), this.options.logger);
  }

  sessionCount(): number {
    return this.sessions.size;
  }

  /** Stops accepting; GOAWAY to callers (they move to another ingress); cuts what is left after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    this.stopping = true;
    this.handshakes.destroyAll();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) if (!session.closed) session.close();
    const deadline = setTimeout(() => {
      for (const s of [...this.streams]) s.cut();
      this.guards.destroyAll();
    }, graceMs);
    await closed;
    clearTimeout(deadline);
    this.guards.destroyAll();
    this.guards.stop();
    this.refusals.close();
  }

  private onConnection(socket: Socket): void {
    const refusal = this.handshakes.accept(socket, this.stopping);
    if (refusal === undefined) return;
    this.options.metrics.handshakes.inc({ result: 'refused', reason: refusal });
    const remote = sourceAddress(socket.remoteAddress);
    this.refusals.warn(`${refusal}|${remote}`, { remote, reason: refusal }, 'ingress connection refused before its handshake');
  }

  private onHandshakeError(err: NodeJS.ErrnoException, socket: TLSSocket): void {
    socket.destroy();
    if (this.handshakes.wasRefused(socket)) return;
    const { reason, detail } = handshakeFailureReason(err, socket);
    this.options.metrics.handshakes.inc({ result: 'failed', reason });
    const remote = sourceAddress(socket.remoteAddress);
    this.refusals.warn(`handshake-${reason}|${remote}`, { remote, reason, err: detail }, 'ingress handshake failed');
  }

  private onSession(session: ServerHttp2Session): void {
    const socket = session.socket as unknown as TLSSocket;
    const { metrics, limits } = this.options;
    const remote = sourceAddress(socket.remoteAddress);
    let peerId = 'unverified';
    const guard = this.guards.guard(session, this.handshakes.takeSocket(socket), {
      onEnd: (reason, detail) => {
        metrics.errors.inc({ reason });
        if (reason === 'rapid-reset') this.admission.penalize(peerId);
        this.refusals.warn(`${reason}|${peerId}`, { peer: peerId, remote, reason }, `ingress session ended: ${detail}`);
      },
    });
    const expected = this.material.federation.expectedTrustDomain(socket.servername);
    const check = expected.ok ? checkPeer(socket, expected.trustDomain, this.material.zoneOf) : ({ ok: false, reason: expected.reason, message: expected.message } as const);
    if (!check.ok) {
      metrics.handshakes.inc({ result: 'failed', reason: check.reason });
      this.refusals.warn(`${check.reason}|${remote}`, { remote, reason: check.reason }, `ingress peer refused: ${check.message}`);
      guard.refuse(h2.NGHTTP2_NO_ERROR);
      return;
    }
    peerId = check.peer.spiffeId;
    const admission = this.admission.admit(peerId, remote);
    if (!admission.ok) {
      metrics.handshakes.inc({ result: 'refused', reason: admission.reason });
      this.refusals.warn(`${admission.reason}|${peerId}`, { peer: peerId, remote, reason: admission.reason }, 'ingress session refused: session limit reached');
      guard.refuse(h2.NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    const caller: Caller = { peer: check.peer, zone: check.peer.zone ?? UNKNOWN_ZONE };
    metrics.handshakes.inc({ result: 'ok', reason: socket.isSessionReused() ? 'resumed' : 'full' });
    metrics.sessions.inc();
    this.sessions.add(session);
    this.peers.set(session, check.peer);
    if (this.stopping) session.close();
    try {
      session.setLocalWindowSize(limits.sessionWindowBytes);
    } catch {
      // Closed meanwhile.
    }
    session.setTimeout(limits.idleTimeoutMs, () => {
      metrics.errors.inc({ reason: 'idle-timeout' });
      session.close();
    });
    const expiry = setTimeout(() => session.close(), Math.min(2_147_483_647, Math.max(0, check.peer.notAfterMs - Date.now())));
    expiry.unref();
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      guard.watchStream(stream);
      this.onStream(stream, headers, caller);
    });
    session.on('error', () => metrics.errors.inc({ reason: 'session-error' }));
    session.once('close', () => {
      clearTimeout(expiry);
      admission.release();
      this.sessions.delete(session);
      metrics.sessions.dec();
    });
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, caller: Caller): void {
    stream.on('error', () => undefined);
    const authority = headers[':authority'];
    const destination = headers[':method'] === 'CONNECT' ? parseAuthority(typeof authority === 'string' ? authority : undefined) : undefined;
    if (destination === undefined) {
      this.refuse(stream, caller, undefined, STREAM_REFUSALS.badTarget, 'a zone ingress takes only CONNECT <service>.<namespace>:<port>');
      return;
    }
    const verdict = judgeCaller(this.options.rules, caller.peer.spiffeId, caller.zone);
    if (verdict !== 'admitted') {
      const kind = verdict === 'zone-not-admitted' ? STREAM_REFUSALS.zoneNotAdmitted : STREAM_REFUSALS.identityRefused;
      this.refuse(stream, caller, destination, kind, verdict === 'zone-not-admitted' ? `callers of zone ${caller.zone} are not admitted here` : `${caller.peer.spiffeId} is refused here`);
      return;
    }
    const route = this.options.routes.resolve(destination);
    if (route.kind === 'unknown-service') {
      this.refuse(stream, caller, destination, STREAM_REFUSALS.unknownService, `this zone serves no ${destination.namespace}/${destination.service} on port ${destination.port}`);
      return;
    }
    this.dial(stream, caller, destination, route.pick, new Set<string>());
  }

  /** Connects to a healthy endpoint (the next one on failure, up to INGRESS_MAX_ATTEMPTS), then splices. */
  private dial(stream: ServerHttp2Stream, caller: Caller, destination: Destination, pick: (exclude: ReadonlySet<string>) => BalancedEndpoint | undefined, tried: Set<string>): void {
    const endpoint = tried.size < INGRESS_MAX_ATTEMPTS ? pick(tried) : undefined;
    if (endpoint === undefined) {
      this.refuse(stream, caller, destination, STREAM_REFUSALS.noHealthyEndpoint, `no healthy endpoint of ${destination.namespace}/${destination.service} in this zone${tried.size > 0 ? ` (${tried.size} tried)` : ''}`);
      return;
    }
    tried.add(endpoint.key);
    const balancer = this.options.routes.balancer;
    balancer.begin(endpoint);
    const limits = this.options.limits;
    const socket = connect({ host: endpoint.endpoint.address, port: endpoint.endpoint.tunnelPort, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => socket.destroy(new Error(`no connection within ${limits.tunnelConnectTimeoutMs} ms`)), limits.tunnelConnectTimeoutMs);
    const onFail = (): void => {
      clearTimeout(timer);
      balancer.end(endpoint, false);
      if (stream.destroyed || stream.closed) return;
      this.dial(stream, caller, destination, pick, tried);
    };
    socket.once('error', onFail);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onFail);
      if (stream.destroyed || stream.closed) {
        balancer.end(endpoint, true);
        socket.destroy();
        return;
      }
      this.forward(stream, socket, caller, destination, endpoint);
    });
  }

  private forward(stream: ServerHttp2Stream, socket: Socket, caller: Caller, destination: Destination, endpoint: BalancedEndpoint): void {
    const { metrics, limits } = this.options;
    const label = `${destination.namespace}/${destination.service}`;
    try {
      stream.respond({ ':status': 200 });
    } catch {
      socket.destroy();
      this.options.routes.balancer.end(endpoint, true);
      return;
    }
    metrics.streams.inc({ result: 'ok', source_zone: caller.zone, destination: label });
    metrics.activeStreams.inc();
    const started = Date.now();
    const handle = splice(socket, stream, limits.idleTimeoutMs, (result) => {
      this.streams.delete(handle);
      metrics.activeStreams.dec();
      metrics.bytes.inc({ flow: 'to_destination' }, socket.bytesWritten);
      metrics.bytes.inc({ flow: 'to_source' }, socket.bytesRead);
      this.options.routes.balancer.end(endpoint, true);
      this.options.logger.info({ source: caller.peer.spiffeId, sourceZone: caller.zone, destination: label, endpoint: endpoint.key, result, durationMs: Date.now() - started, bytesToDestination: socket.bytesWritten, bytesToSource: socket.bytesRead }, 'ingress stream');
    });
    this.streams.add(handle);
  }

  private refuse(stream: ServerHttp2Stream, caller: Caller, destination: Destination | undefined, kind: HttpFailureKind, message: string): void {
    const reason = streamReason(kind);
    const label = destination === undefined ? 'unknown' : `${destination.namespace}/${destination.service}`;
    this.options.metrics.streams.inc({ result: reason, source_zone: caller.zone, destination: label });
    const correlationId = nextCorrelationId();
    this.refusals.warn(`${reason}|${caller.peer.spiffeId}|${label}`, { correlationId, source: caller.peer.spiffeId, sourceZone: caller.zone, destination: label, reason }, `ingress stream refused: ${message}`);
    refuseStream(stream, kind, message, correlationId);
  }
}
