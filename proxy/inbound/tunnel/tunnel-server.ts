/**
 * The inbound tunnel: an HTTP/2 server on the tunnel port that accepts only mTLS sessions from workloads
 * of this mesh, and turns each stream into a connection or request to the local app.
 *
 * Accept path, in order: TCP accept into the handshake pool (inbound/tunnel/handshake-pool.ts: its own cap, and one per
 * source address) → TLS 1.3 handshake with a required client certificate, chain checked against the trust
 * bundle by node:tls, ALPN h2 only, cut after `handshakeTimeoutMs` → SPIFFE leaf check (`checkPeer`) when the
 * session starts, before any frame is read → a place among the sessions (inbound/tunnel/session-admission.ts: in total, per
 * identity, per address) → a guard that ends the session with its socket when HTTP/2 gives up on it or the
 * peer abuses it (inbound/tunnel/session-guard.ts) → per stream: route by method (CONNECT = TCP, other = HTTP with
 * `trellis-target`), authorize with the policy in force, deliver.
 *
 * Everything a peer can do wrong stays inside its own session or stream: it is cut, counted
 * (`trellis_tunnel_handshakes_total`, `trellis_tunnel_errors_total`) and logged at a bounded rate
 * (log-sampler.ts), and other sessions never notice.
 */
import { SETTLE_AFTER_CUT_MS, TrackedSet } from '../../core/tracked-set.js';
import { constants as h2, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { createTunnelPortServer } from './tunnel-port-server.js';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { AppPort, WorkloadIdentity } from '../../../api/data-plane.js';
import { TrellisError } from '../../../common/errors.js';
import { nextCorrelationId } from '../../core/correlation.js';
import { parseAuthority } from '../../core/destination.js';
import type { ProxyLimits } from '../../core/limits.js';
import { LogSampler } from '../../core/log-sampler.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import { checkPeer, type VerifiedPeer } from '../../core/peer-identity.js';
import { buildTlsMaterial, type TlsMaterial } from '../../core/tls-material.js';
import { TARGET_HEADER } from '../../core/tunnel-protocol.js';
import { STREAM_REFUSALS, streamReason, type HttpFailureKind } from '../../http/errors.js';
import { handleConnectStream } from '../tcp/connect-stream.js';
import type { InboundState } from '../inbound-state.js';
import { closeDefederatedSessions, closeRevokedSessions, isRevokedPeer, peerZoneLabel } from './revoked-peers.js';
import { refuseStream } from '../tcp/stream-refusal.js';
import { deciderOf, type TrackedStream } from '../authorize.js';
import type { AppDialSource } from '../app-source.js';
import { handshakeFailureReason } from './handshake-failure.js';
import { HandshakePool, sourceAddress } from './handshake-pool.js';
import { SessionAdmission } from './session-admission.js';
import { SessionGuards, type GuardReason } from './session-guard.js';
import { CODE } from '../../../common/error-codes.js';
import { isHttpFamily } from '../../../api/port-protocol.js';

/** Hands a non-CONNECT stream (an HTTP request for an `http` app port) to the HTTP path. */
export type InboundHttpDispatch = (
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  peer: VerifiedPeer,
  appPort: AppPort,
  state: InboundState,
  /** The state in force now, for streams that serve many requests (lanes). */
  current: () => InboundState,
) => void;

export interface TunnelServerOptions {
  readonly trustDomain: string;
  readonly identity: WorkloadIdentity;
  readonly state: InboundState;
  readonly limits: ProxyLimits;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  /** One info line per TCP stream at its end (default true). */
  readonly accessLog?: boolean;
  /** The HTTP path; without it HTTP requests are answered 501. */
  readonly http?: InboundHttpDispatch;
  /** In transparent capture: where apps off loopback are dialled from (app-source.ts). */
  readonly appSource?: AppDialSource;
}

const PEER = Symbol('trellis.peer');
/** Largest delay a Node timer accepts; longer certificate lifetimes are re-armed on rotation anyway. */
const MAX_TIMER_MS = 2_147_483_647;

export class TunnelServer {
  private readonly server: Http2SecureServer;
  private state: InboundState;
  private material: TlsMaterial;
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly tracked = new TrackedSet<TrackedStream>();
  private readonly log: Logger;
  /** Warnings a peer can repeat at will (refusals, denials), written at a bounded rate. */
  private readonly refusals: LogSampler;
  private readonly handshakes: HandshakePool;
  private readonly admission: SessionAdmission;
  private readonly guards: SessionGuards;
  private readonly accessLog: boolean;
  private stopping = false;

  constructor(private readonly options: TunnelServerOptions) {
    this.state = options.state;
    this.log = options.logger;
    this.accessLog = options.accessLog ?? true;
    this.material = buildTlsMaterial(options.identity);
    const limits = options.limits;
    const metrics = options.metrics;
    this.refusals = new LogSampler(this.log, limits.denialLogIntervalMs);
    this.handshakes = new HandshakePool(limits, (pending) => metrics.tunnelHandshakesPending.set({ direction: 'inbound' }, pending));
    this.admission = new SessionAdmission(limits);
    this.guards = new SessionGuards(limits);
    this.server = createTunnelPortServer(() => this.material, limits, 256);
    this.server.on('session', (session) => this.onSession(session));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => this.onHandshakeError(err, socket));
    this.server.on('unknownProtocol', (socket: TLSSocket) => {
      metrics.tunnelHandshakes.inc({ direction: 'inbound', result: 'failed', reason: 'no-alpn-h2' });
      const remote = sourceAddress(socket.remoteAddress);
      this.refusals.warn(`no-alpn-h2|${remote}`, { remote }, 'tunnel peer did not negotiate ALPN h2; closed');
      socket.destroy();
    });
    this.server.on('drop', (data: { remoteAddress?: string } | undefined) => {
      metrics.tunnelErrors.inc({ direction: 'inbound', reason: 'max-connections' });
      const remote = sourceAddress(data?.remoteAddress);
      this.refusals.warn(`drop|${remote}`, { remote, maxConnections: this.server.maxConnections }, 'tunnel connection dropped: connection limit reached');
    });
    // Before node:tls starts on the socket, so a refused connection costs no handshake work.
    this.server.prependListener('connection', (socket: Socket) => this.onConnection(socket));
    // Before node:http2 makes the session, so the session finds its real socket (inbound/tunnel/handshake-pool.ts).
    this.server.prependListener('secureConnection', (socket: TLSSocket) => this.handshakes.completed(socket));
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new TrellisError(CODE.TUNNEL_LISTEN_FAILED, `cannot listen on ${host}:${port} for the tunnel: ${err.message}`, { side: 'input', cause: err }));
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | undefined {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? a : undefined;
  }

  get tlsMaterial(): TlsMaterial {
    return this.material;
  }

  private readonly currentState = (): InboundState => this.state;
  private readonly peerOf = (s: ServerHttp2Session): VerifiedPeer | undefined => (s.socket as unknown as Record<symbol, VerifiedPeer | undefined> | undefined)?.[PEER];

  /**
   * New handshakes present the new certificate and trust the new bundle and federated bundles; open sessions
   * are untouched. The new context also brings new session-ticket keys, so no ticket issued under the old
   * trust resumes (a resumed handshake skips verification).
   */
  setIdentity(identity: WorkloadIdentity): void {
    const material = buildTlsMaterial(identity);
    this.server.setSecureContext({ ...material.options });
    this.material = material;
    closeDefederatedSessions(this.sessions, this.peerOf, (td) => td === material.trustDomain || material.federation.has(td), this.log);
  }

  /**
   * Swaps app ports and policy. Open streams are judged again under the new policy and cut when now denied,
   * so a revoked permission takes effect on long-lived connections, not only new ones.
   */
  setState(state: InboundState): number {
    this.state = state;
    let cut = closeRevokedSessions(this.sessions, this.peerOf, state, this.options.metrics, this.log);
    for (const entry of this.tracked.snapshot()) {
      const decision = state.policy.evaluate(entry.request);
      if (!decision.allowed) {
        cut += 1;
        this.log.warn({ source: entry.request.source, decidedBy: deciderOf(decision) }, 'open stream now denied by policy: closed');
        entry.cut('policy-revoked');
      }
    }
    return cut;
  }

  /** Registers an open stream so a policy change re-judges it and shutdown can cut it; returns the unregister function. */
  track(entry: TrackedStream): () => void {
    return this.tracked.add(entry);
  }

  sessionCount(): number {
    return this.sessions.size;
  }

  /** Connections in their TLS handshake now. */
  handshakeCount(): number {
    return this.handshakes.size;
  }

  /**
   * Stops accepting, lets open streams finish for `graceMs` (GOAWAY tells peers to go elsewhere), then cuts the
   * rest and destroys every session with its socket. Resolves within `graceMs` + SETTLE_AFTER_CUT_MS whatever
   * peers do: handshakes in progress are cut at once (unauthenticated, nothing to drain), and a session that
   * never finishes closing (a peer that stops reading) is destroyed with its socket at the deadline.
   */
  async close(graceMs: number): Promise<void> {
    this.stopping = true;
    const started = Date.now();
    this.handshakes.destroyAll();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) if (!session.closed) session.close();
    const deadline = setTimeout(() => {
      for (const entry of this.tracked.snapshot()) entry.cut('shutdown');
      this.guards.destroyAll();
      this.handshakes.destroyAll();
    }, graceMs);
    const limitMs = graceMs + SETTLE_AFTER_CUT_MS;
    if (!(await within(closed, limitMs))) this.log.warn({ sessions: this.sessions.size, handshakes: this.handshakes.size }, 'tunnel connections still open after shutdown');
    // Sessions can close before the app side of a cut stream has; wait until every stream is counted.
    if (!(await this.tracked.whenEmpty(Math.max(0, limitMs - (Date.now() - started))))) this.log.warn({ open: this.tracked.size }, 'tunnel streams still open after shutdown');
    clearTimeout(deadline);
    this.guards.destroyAll();
    this.guards.stop();
    this.refusals.close();
  }

  /** At TCP accept: a place in the handshake pool, or the connection is cut before TLS starts. */
  private onConnection(socket: Socket): void {
    const refusal = this.handshakes.accept(socket, this.stopping);
    if (refusal === undefined) return;
    const remote = sourceAddress(socket.remoteAddress);
    this.options.metrics.tunnelHandshakes.inc({ direction: 'inbound', result: 'refused', reason: refusal });
    this.refusals.warn(`${refusal}|${remote}`, { remote, reason: refusal, handshakes: this.handshakes.size }, 'tunnel connection refused before its handshake');
  }

  private onSession(session: ServerHttp2Session): void {
    const socket = session.socket as unknown as TLSSocket;
    const metrics = this.options.metrics;
    const remote = sourceAddress(socket.remoteAddress);
    let peerId = 'unverified';
    const guard = this.guards.guard(session, this.handshakes.takeSocket(socket), {
      onEnd: (reason: GuardReason, detail: string) => {
        // Session and frame errors are counted by the listeners below, as they always were.
        if (reason !== 'session-error' && reason !== 'frame-error') metrics.tunnelErrors.inc({ direction: 'inbound', reason });
        // Not for wedged sessions: a peer that stops reading for a while looks the same as one nghttp2 gave up on.
        if (reason === 'rapid-reset') this.admission.penalize(peerId);
        this.refusals.warn(`${reason}|${peerId}`, { peer: peerId, remote, reason }, `tunnel session ended: ${detail}`);
      },
    });
    const expected = this.material.federation.expectedTrustDomain(socket.servername);
    const check = expected.ok ? checkPeer(socket, expected.trustDomain, this.material.zoneOf) : ({ ok: false, reason: expected.reason, message: expected.message } as const);
    if (!check.ok) {
      metrics.tunnelHandshakes.inc({ direction: 'inbound', result: 'failed', reason: check.reason });
      this.refusals.warn(`${check.reason}|${remote}`, { remote, reason: check.reason }, `tunnel peer refused: ${check.message}`);
      guard.refuse(h2.NGHTTP2_NO_ERROR);
      return;
    }
    const peer = check.peer;
    peerId = peer.spiffeId;
    if (isRevokedPeer(this.state, peer)) {
      metrics.tunnelHandshakes.inc({ direction: 'inbound', result: 'failed', reason: 'revoked' });
      this.refusals.warn(`revoked|${peer.spiffeId}|${peer.serial}`, { peer: peer.spiffeId, serial: peer.serial, remote }, 'tunnel peer refused: its certificate was revoked (join token revoked)');
      guard.refuse(h2.NGHTTP2_NO_ERROR);
      return;
    }
    const admission = this.admission.admit(peer.spiffeId, remote);
    if (!admission.ok) {
      metrics.tunnelHandshakes.inc({ direction: 'inbound', result: 'refused', reason: admission.reason });
      this.refusals.warn(`${admission.reason}|${peer.spiffeId}|${remote}`, { peer: peer.spiffeId, remote, reason: admission.reason }, 'tunnel session refused: session limit reached');
      guard.refuse(h2.NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    (socket as unknown as Record<symbol, unknown>)[PEER] = peer;
    metrics.tunnelHandshakes.inc({ direction: 'inbound', result: 'ok', reason: socket.isSessionReused() ? 'resumed' : 'full' });
    metrics.tunnelSessions.inc({ direction: 'inbound' });
    metrics.tunnelPeerSessions.inc({ source_zone: peerZoneLabel(peer) });
    this.sessions.add(session);
    if (this.stopping) session.close();
    try {
      session.setLocalWindowSize(this.options.limits.sessionWindowBytes);
    } catch {
      // Closed meanwhile; 'close' below cleans up.
    }
    session.setTimeout(this.options.limits.idleTimeoutMs, () => {
      metrics.tunnelErrors.inc({ direction: 'inbound', reason: 'idle-timeout' });
      session.close();
    });
    const expiresIn = Math.min(MAX_TIMER_MS, Math.max(0, peer.notAfterMs - Date.now()));
    const expiry = setTimeout(() => {
      this.log.info({ peer: peer.spiffeId }, 'peer certificate expired: closing its tunnel session');
      metrics.tunnelErrors.inc({ direction: 'inbound', reason: 'peer-certificate-expired' });
      session.close();
    }, expiresIn);
    expiry.unref();

    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      guard.watchStream(stream);
      this.onStream(stream, headers, peer);
    });
    session.on('error', (err: Error) => {
      metrics.tunnelErrors.inc({ direction: 'inbound', reason: 'session-error' });
      this.log.debug({ peer: peer.spiffeId, err: err.message }, 'tunnel session error');
    });
    session.on('frameError', () => metrics.tunnelErrors.inc({ direction: 'inbound', reason: 'frame-error' }));
    session.once('close', () => {
      clearTimeout(expiry);
      admission.release();
      this.sessions.delete(session);
      metrics.tunnelSessions.dec({ direction: 'inbound' });
    });
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: VerifiedPeer): void {
    const state = this.state;
    // A stream reset by the peer surfaces as 'error' on the stream; it must never reach the process.
    stream.on('error', () => undefined);
    const method = headers[':method'];
    const isConnect = method === 'CONNECT';
    const target = isConnect ? headers[':authority'] : headers[TARGET_HEADER];
    const destination = parseAuthority(typeof target === 'string' ? target : undefined);
    if (destination === undefined) {
      this.refuse(stream, peer, STREAM_REFUSALS.badTarget, isConnect ? 'CONNECT :authority must be <service>.<namespace>:<port>' : `HTTP requests on the tunnel need a ${TARGET_HEADER}: <service>.<namespace>:<port> header`);
      return;
    }
    if (destination.service !== state.local.service || destination.namespace !== state.local.namespace) {
      this.refuse(stream, peer, STREAM_REFUSALS.misdirected, `this sidecar serves ${state.local.namespace}/${state.local.service}, not ${destination.namespace}/${destination.service}`);
      return;
    }
    const appPort = state.appPorts.get(destination.port);
    if (appPort === undefined) {
      this.refuse(stream, peer, STREAM_REFUSALS.unknownPort, `${state.local.namespace}/${state.local.service} has no app port ${destination.port}`);
      return;
    }
    // An `http` port gets everything from the HTTP path, CONNECT included: there CONNECT carries a tunnelled
    // upgrade, which is authorized by method and path like any request.
    if (isHttpFamily(appPort.protocol) && this.options.http !== undefined) {
      this.options.http(stream, headers, peer, appPort, state, this.currentState);
      return;
    }
    if (isConnect) {
      handleConnectStream(stream, peer, state, appPort, {
        limits: this.options.limits,
        metrics: this.options.metrics,
        logger: this.log,
        denialLog: this.refusals,
        accessLog: this.accessLog,
        track: (entry) => this.track(entry),
        appSource: this.options.appSource,
      });
      return;
    }
    this.refuse(stream, peer, STREAM_REFUSALS.httpNotSupported, isHttpFamily(appPort.protocol) ? 'this sidecar has no HTTP path' : `app port ${appPort.port} is declared tcp: use CONNECT`);
  }

  private refuse(stream: ServerHttp2Stream, peer: VerifiedPeer, kind: HttpFailureKind, message: string): void {
    const reason = streamReason(kind);
    this.options.metrics.tunnelErrors.inc({ direction: 'inbound', reason });
    const correlationId = nextCorrelationId();
    this.refusals.warn(`${reason}|${peer.spiffeId}`, { correlationId, source: peer.spiffeId, reason }, `tunnel stream refused: ${message}`);
    refuseStream(stream, kind, message, correlationId);
  }

  private onHandshakeError(err: NodeJS.ErrnoException, socket: TLSSocket): void {
    const remote = sourceAddress(socket.remoteAddress ?? (socket as unknown as { _parent?: Socket })._parent?.remoteAddress);
    socket.destroy();
    // Refused at accept and already counted there.
    if (this.handshakes.wasRefused(socket)) return;
    const { reason, detail } = handshakeFailureReason(err, socket);
    this.options.metrics.tunnelHandshakes.inc({ direction: 'inbound', result: 'failed', reason });
    this.refusals.warn(`handshake-${reason}|${remote}`, { remote, reason, err: detail }, 'tunnel handshake failed');
  }
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
