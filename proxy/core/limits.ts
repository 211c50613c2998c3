/**
 * Every limit of the data plane in one place, with the defaults an operator gets without configuring
 * anything. Each bounds a resource a misbehaving peer or a burst could otherwise exhaust: memory
 * (flow-control windows, header bytes), file descriptors (sessions, connections), and time (handshakes,
 * idle sessions, app connects).
 *
 * Memory is bounded per tunnel session by the HTTP/2 connection window: a peer can have at most
 * `sessionWindowBytes` unread bytes in flight per session, however many streams it opens, because Node
 * returns window credit only as the reading side consumes data. A stream gets at most `streamWindowBytes`.
 */

export interface ProxyLimits {
  /** TLS handshake must finish within this, or the connection is cut (slowloris on the tunnel port). */
  readonly handshakeTimeoutMs: number;
  /** Concurrent tunnel sessions accepted by the inbound side (authenticated; handshakes have their own pool). */
  readonly maxSessions: number;
  /**
   * Concurrent inbound sessions per peer SPIFFE ID: one identity (even one the policy denies) cannot take
   * every place. 64 covers 32 replicas of a caller at the pool's default 2 sessions per endpoint, or 4 at its
   * maximum of 16.
   */
  readonly maxSessionsPerIdentity: number;
  /**
   * Concurrent inbound sessions per source address: twice the per-identity cap, because callers behind one
   * address (a node's NAT, a zone ingress) are several identities, yet one address cannot fill `maxSessions`.
   */
  readonly maxSessionsPerAddress: number;
  /** Connections still in their TLS handshake (unauthenticated), kept apart from `maxSessions`. */
  readonly maxHandshakes: number;
  /** Handshakes in progress per source address: one source stalling handshakes cannot fill `maxHandshakes`. */
  readonly maxHandshakesPerAddress: number;
  /**
   * A session that hit an error (GOAWAY with an error code either way, a session or frame error, a rapid reset,
   * a refusal) is destroyed with its socket this long after, whatever the peer does: its GOAWAY gets a chance
   * to leave, a peer that never reads cannot keep the socket.
   */
  readonly sessionErrorCloseMs: number;
  /**
   * Every inbound session is sent a PING this often. nghttp2 ends a session on its own for some peer errors
   * (protocol errors, oversized header blocks) without telling Node, and then writes nothing more; a PING
   * still unsent at the next probe is how such a wedged session is found, then destroyed.
   */
  readonly sessionProbeIntervalMs: number;
  /** A peer that does not acknowledge a PING within this (RFC 9113 asks for "as soon as possible") is cut. */
  readonly sessionPingTimeoutMs: number;
  /**
   * Rapid reset (CVE-2023-44487): a session whose streams were reset at least this many times within
   * `rapidResetWindowMs`, resets that are also more than half of the streams opened there, gets
   * GOAWAY(ENHANCE_YOUR_CALM) and is destroyed. 200 per second is far above what a caller's aborted
   * connections produce on one session (a client sidecar spreads its callers over its pooled sessions) and
   * far below an attack (tens of thousands per second per session), and below nghttp2's own limiter (1,000 in
   * a burst), which would only GOAWAY the session and leave it open. Envoy's premature-reset check is
   * stricter (500 streams, half reset within a second of opening, over the whole connection).
   */
  readonly rapidResetMaxResets: number;
  readonly rapidResetWindowMs: number;
  /**
   * After a session of a peer identity is ended for rapid reset, new sessions of that identity are refused for
   * this long (0: never), right after the handshake and before any frame is read. Without it an attacker
   * reconnects at once, and each fresh session buys another `rapidResetMaxResets` streams.
   */
  readonly abusePenaltyMs: number;
  /** Concurrent streams per tunnel session, advertised to peers (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxStreamsPerSession: number;
  /** A tunnel session with no open stream for this long is closed gracefully (GOAWAY). */
  readonly idleTimeoutMs: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: bytes of headers one request may carry. */
  readonly maxHeaderListSize: number;
  /** HTTP/2 initial window per stream: large enough that 1 MiB transfers do not stall on window updates. */
  readonly streamWindowBytes: number;
  /** HTTP/2 connection window per session: the bound on unread bytes per session. */
  readonly sessionWindowBytes: number;
  /** Node's per-session memory cap for nghttp2 (MB); a session beyond it is refused new streams. */
  readonly maxSessionMemoryMb: number;
  /** Connecting to the local app (inbound) must succeed within this. */
  readonly appConnectTimeoutMs: number;
  /** Opening a tunnel session to a peer (TCP + TLS) must succeed within this. */
  readonly tunnelConnectTimeoutMs: number;
  /** A CONNECT stream must be answered within this (the peer connects to its app meanwhile). */
  readonly streamOpenTimeoutMs: number;
  /**
   * Concurrent app connections per outbound listener (TCP or HTTP). One local app rarely needs more than a
   * few hundred; the cap keeps one runaway client from taking every file descriptor of the sidecar.
   */
  readonly maxOutboundConnections: number;
  /** Concurrent app connections over all outbound listeners of the sidecar together (file descriptors). */
  readonly maxOutboundConnectionsTotal: number;
  /**
   * A request head from a peer on an inbound HTTP lane must be complete within this from its first byte
   * (a total deadline, not inactivity: a head sent a byte at a time must not hold the lane).
   */
  readonly laneHeadTimeoutMs: number;
  /** A proxied TCP connection with no bytes either way for this long is closed (0 = never). */
  readonly tcpIdleTimeoutMs: number;
  /**
   * Repeated denials and refusals per (peer, rule or reason) are logged once, then as one summary line with
   * the count per this interval (log-sampler.ts); metrics count every one.
   */
  readonly denialLogIntervalMs: number;
}

export const DEFAULT_LIMITS: ProxyLimits = Object.freeze({
  handshakeTimeoutMs: 10_000,
  maxSessions: 1_024,
  maxSessionsPerIdentity: 64,
  maxSessionsPerAddress: 128,
  maxHandshakes: 256,
  maxHandshakesPerAddress: 32,
  sessionErrorCloseMs: 1_000,
  sessionProbeIntervalMs: 1_000,
  sessionPingTimeoutMs: 10_000,
  rapidResetMaxResets: 200,
  rapidResetWindowMs: 1_000,
  abusePenaltyMs: 10_000,
  maxStreamsPerSession: 256,
  idleTimeoutMs: 15 * 60_000,
  maxHeaderListSize: 16 * 1024,
  streamWindowBytes: 1024 * 1024,
  sessionWindowBytes: 8 * 1024 * 1024,
  maxSessionMemoryMb: 32,
  appConnectTimeoutMs: 5_000,
  tunnelConnectTimeoutMs: 5_000,
  streamOpenTimeoutMs: 10_000,
  maxOutboundConnections: 1_024,
  maxOutboundConnectionsTotal: 4_096,
  laneHeadTimeoutMs: 30_000,
  tcpIdleTimeoutMs: 60 * 60_000,
  denialLogIntervalMs: 10_000,
});

export function resolveLimits(overrides: Partial<ProxyLimits> = {}): ProxyLimits {
  const merged: ProxyLimits = { ...DEFAULT_LIMITS, ...stripUndefined(overrides) };
  return Object.freeze(merged);
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
