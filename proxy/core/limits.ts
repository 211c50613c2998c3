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
  /** Concurrent tunnel sessions accepted by the inbound side. */
  readonly maxSessions: number;
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
}

export const DEFAULT_LIMITS: ProxyLimits = Object.freeze({
  handshakeTimeoutMs: 10_000,
  maxSessions: 1_024,
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
