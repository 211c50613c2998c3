/**
 * Every limit of the data plane in one schema, with the defaults an operator gets without configuring
 * anything, the bounds a config file's value must keep, and one line each for the doc table
 * (docs/operations.md, checked against this file by test/common/limit-schema.test.ts). Each bounds a
 * resource a misbehaving peer or a burst could otherwise exhaust: memory (flow-control windows, header
 * bytes), file descriptors (sessions, connections), and time (handshakes, idle sessions, app connects).
 * The machinery (defaults, merge, bounds check, YAML reading) is common/limit-schema.ts.
 *
 * Memory is bounded per tunnel session by the HTTP/2 connection window: a peer can have at most
 * `sessionWindowBytes` unread bytes in flight per session, however many streams it opens, because Node
 * returns window credit only as the reading side consumes data. A stream gets at most `streamWindowBytes`.
 *
 * Bounds of config-file fields: counts 1 to 1,000,000; bytes 1 KiB to 2^31-1 (HTTP/2 windows are at most
 * that); durations above zero and at most 24 days (Node's timers overflow beyond 2^31-1 ms).
 */
import { defineLimits, limitDefaults, withOverrides, type LimitSpec, type LimitValues } from '../../common/limit-schema.js';

const DAY_MS = 86_400_000;
const count = (value: number, doc: string, configName?: string): LimitSpec => ({ default: value, min: 1, max: 1_000_000, unit: 'count', doc, ...(configName === undefined ? {} : { configName }) });
const bytes = (value: number, doc: string, configName?: string): LimitSpec => ({ default: value, min: 1024, max: 2_147_483_647, unit: 'bytes', doc, ...(configName === undefined ? {} : { configName }) });
const duration = (value: number, doc: string, configName?: string): LimitSpec => ({ default: value, min: 1, max: 24 * DAY_MS, unit: 'ms', doc, ...(configName === undefined ? {} : { configName }) });
/** A duration where 0 turns the timer off (programmatic only: a config file's durations are above zero). */
const durationOrNever = (value: number, doc: string, configName?: string): LimitSpec => ({ ...duration(value, doc, configName), min: 0 });

/** The sidecar's limits (`limits:` in a static config; the field name is the config name with `Ms` for durations). */
export const PROXY_LIMIT_SCHEMA = defineLimits({
  handshakeTimeoutMs: duration(10_000, 'a TLS handshake on the tunnel port must finish within this (slowloris)', 'handshakeTimeout'),
  maxSessions: count(1_024, 'concurrent authenticated inbound tunnel sessions', 'maxSessions'),
  // One identity (even one the policy denies) cannot take every place. 64 covers 32 replicas of a caller at
  // the pool's default 2 sessions per endpoint, or 4 at its maximum of 16.
  maxSessionsPerIdentity: count(64, 'concurrent inbound sessions per peer SPIFFE ID', 'maxSessionsPerIdentity'),
  // Twice the per-identity cap: callers behind one address (a node's NAT, a zone ingress) are several
  // identities, yet one address cannot fill `maxSessions`.
  maxSessionsPerAddress: count(128, 'concurrent inbound sessions per source address', 'maxSessionsPerAddress'),
  maxHandshakes: count(256, 'connections still in their TLS handshake, apart from sessions', 'maxHandshakes'),
  maxHandshakesPerAddress: count(32, 'handshakes in progress per source address', 'maxHandshakesPerAddress'),
  // A session that hit an error (GOAWAY with an error code either way, a session or frame error, a rapid
  // reset, a refusal) is destroyed with its socket this long after, whatever the peer does: its GOAWAY gets
  // a chance to leave, a peer that never reads cannot keep the socket.
  sessionErrorCloseMs: duration(1_000, 'a session that hit an error is destroyed this long after', 'sessionErrorClose'),
  // nghttp2 ends a session on its own for some peer errors (protocol errors, oversized header blocks)
  // without telling Node, and then writes nothing more; a PING still unsent at the next probe is how such
  // a wedged session is found, then destroyed.
  sessionProbeIntervalMs: duration(1_000, 'every inbound session is sent a PING this often', 'sessionProbeInterval'),
  // RFC 9113 asks for "as soon as possible".
  sessionPingTimeoutMs: duration(10_000, 'a peer that does not acknowledge a PING within this is cut', 'sessionPingTimeout'),
  // Rapid reset (CVE-2023-44487): a session whose streams were reset at least this many times within
  // `rapidResetWindowMs`, resets that are also more than half of the streams opened there, gets
  // GOAWAY(ENHANCE_YOUR_CALM) and is destroyed. 200 per second is far above what a caller's aborted
  // connections produce on one session (a client sidecar spreads its callers over its pooled sessions) and
  // far below an attack (tens of thousands per second per session), and below nghttp2's own limiter (1,000
  // in a burst), which would only GOAWAY the session and leave it open. Envoy's premature-reset check is
  // stricter (500 streams, half reset within a second of opening, over the whole connection).
  rapidResetMaxResets: count(200, 'stream resets within the window that end a session (rapid reset)', 'rapidResetMaxResets'),
  rapidResetWindowMs: duration(1_000, 'the window rapid resets are counted in', 'rapidResetWindow'),
  // Without it an attacker reconnects at once, and each fresh session buys another `rapidResetMaxResets`
  // streams. 0: never (programmatic only).
  abusePenaltyMs: durationOrNever(10_000, 'an identity ended for rapid reset is refused new sessions this long', 'abusePenalty'),
  maxStreamsPerSession: count(256, 'concurrent streams per tunnel session (SETTINGS_MAX_CONCURRENT_STREAMS)', 'maxStreamsPerSession'),
  idleTimeoutMs: duration(15 * 60_000, 'a tunnel session with no open stream this long is closed (GOAWAY)', 'idleTimeout'),
  maxHeaderListSize: bytes(16 * 1024, 'header bytes one tunnel request may carry (SETTINGS_MAX_HEADER_LIST_SIZE)', 'maxHeaderListSize'),
  // Large enough that 1 MiB transfers do not stall on window updates.
  streamWindowBytes: bytes(1024 * 1024, 'HTTP/2 initial window per stream', 'streamWindowBytes'),
  sessionWindowBytes: bytes(8 * 1024 * 1024, 'HTTP/2 connection window per session: unread bytes per session', 'sessionWindowBytes'),
  maxSessionMemoryMb: { default: 32, min: 1, max: 1_024, unit: 'MiB', doc: "nghttp2's memory per session; beyond it new streams are refused" },
  appConnectTimeoutMs: duration(5_000, 'connecting to the local app (inbound) must succeed within this', 'appConnectTimeout'),
  tunnelConnectTimeoutMs: duration(5_000, 'opening a tunnel session to a peer (TCP and TLS) must succeed within this', 'tunnelConnectTimeout'),
  streamOpenTimeoutMs: duration(10_000, 'a CONNECT stream must be answered within this (the peer connects to its app meanwhile)', 'streamOpenTimeout'),
  // One local app rarely needs more than a few hundred; the cap keeps one runaway client from taking every
  // file descriptor of the sidecar.
  maxOutboundConnections: count(1_024, 'concurrent app connections per outbound listener (TCP or HTTP)', 'maxOutboundConnections'),
  maxOutboundConnectionsTotal: count(4_096, 'concurrent app connections over all outbound listeners together'),
  // A total deadline, not inactivity: a head sent a byte at a time must not hold the lane.
  laneHeadTimeoutMs: duration(30_000, 'a request head on an inbound HTTP lane must be complete within this from its first byte'),
  tcpIdleTimeoutMs: durationOrNever(60 * 60_000, 'a proxied TCP connection with no bytes either way this long is closed (0: never)', 'tcpIdleTimeout'),
  // Metrics count every one (log-sampler.ts).
  denialLogIntervalMs: duration(10_000, 'repeated denials per peer and rule are logged once, then as one count per this', 'denialLogInterval'),
});

/** The outbound HTTP listener (the app's requests to the mesh). */
export const OUTBOUND_HTTP_LIMIT_SCHEMA = defineLimits({
  maxHeaderBytes: bytes(16 * 1024, 'largest request head accepted from the app'),
  headersTimeoutMs: duration(30_000, 'the app must send a complete request head within this (slowloris)'),
  requestTimeoutMs: durationOrNever(300_000, 'the app must send a complete request (head and body) within this (0: never)'),
  keepAliveTimeoutMs: duration(120_000, 'an idle kept-alive app connection is closed after this'),
  maxConnections: count(PROXY_LIMIT_SCHEMA.maxOutboundConnections.default, 'concurrent app connections per listener (the sidecar passes maxOutboundConnections)'),
  maxAttempts: { default: 3, min: 1, max: 16, unit: 'count', doc: 'endpoints tried per request when the tunnel cannot be reached before anything was sent' },
  upstreamIdleTimeoutMs: duration(300_000, 'a request whose tunnel stream is silent this long fails with 504 or is cut'),
  upgradeIdleTimeoutMs: durationOrNever(3_600_000, 'an upgraded (WebSocket) connection silent both ways this long is closed (0: never)'),
});

/** HTTP/1.1 lanes: the caller's pool of them and the inbound side's framing limits on them. */
export const LANE_LIMIT_SCHEMA = defineLimits({
  poolMaxIdlePerEndpoint: count(64, 'idle lanes kept per destination endpoint; more are closed when returned'),
  poolIdleTimeoutMs: duration(15_000, 'an idle lane in the caller\'s pool is closed after this'),
  poolOpenTimeoutMs: duration(10_000, 'a new lane must be accepted (200) within this'),
  maxHeadBytes: bytes(16 * 1024, 'largest request head a peer may send on an inbound lane'),
  maxHeaderCount: count(256, 'header fields per request head on an inbound lane'),
  maxChunkLineBytes: { default: 4096, min: 64, max: 65_536, unit: 'bytes', doc: 'longest chunk-size line (with extensions) on an inbound lane' },
  maxTrailerBytes: bytes(16 * 1024, 'trailer bytes per request on an inbound lane'),
  // The caller closes its idle lanes much sooner (`poolIdleTimeoutMs`).
  inboundIdleTimeoutMs: duration(120_000, 'an inbound lane with no request this long is closed'),
});

/** The inbound side's connections to the local app for HTTP requests. */
export const APP_POOL_LIMIT_SCHEMA = defineLimits({
  maxSocketsPerPort: count(256, 'concurrent connections to one app port; more requests wait for one'),
  maxIdleSocketsPerPort: count(64, 'idle connections kept open per app port'),
  idleTimeoutMs: duration(30_000, 'an idle kept-alive app connection is closed after this'),
  maxPendingPerPort: count(1_024, 'requests waiting for an app connection per port; beyond, 503 at once'),
  connectTimeoutMs: duration(5_000, 'connecting to the app must succeed within this'),
  requestIdleTimeoutMs: duration(300_000, 'a request whose app connection is silent this long fails with 504'),
  maxHeaderBytes: bytes(16 * 1024, 'largest response head accepted from the app'),
});

/**
 * The inbound side's HTTP/2 (h2c) connections to an app port declared `http2` or `grpc`
 * (inbound/http2/h2c-pool.ts): a few connections, many streams each, and a bounded wait.
 */
export const H2C_POOL_LIMIT_SCHEMA = defineLimits({
  maxConnections: count(4, 'h2c connections to one app port; more requests wait for a stream'),
  maxStreamsPerConnection: count(100, 'streams per h2c app connection (fewer when the app\'s SETTINGS say so)'),
  maxPending: count(1_024, 'requests waiting for an h2c stream per port; beyond, 503 at once'),
  connectTimeoutMs: duration(5_000, 'connecting to the app over h2c must succeed within this'),
  idleTimeoutMs: duration(30_000, 'an h2c app connection with no stream this long is closed'),
  maxHeaderListSize: bytes(16 * 1024, 'largest response header list accepted from the app over h2c'),
  streamWindowBytes: bytes(1024 * 1024, 'flow-control window per stream to the app over h2c'),
});

/** Inbound transparent capture (port 15006). */
export const CAPTURE_LIMIT_SCHEMA = defineLimits({
  maxConnections: count(4_096, 'concurrent captured inbound connections'),
  appConnectTimeoutMs: duration(5_000, 'the app must accept a handed-off connection within this'),
  idleTimeoutMs: durationOrNever(60 * 60_000, 'a handed-off connection silent both ways this long is closed (0: never)'),
});

/** Outbound transparent capture (port 15001). */
export const TRANSPARENT_LIMIT_SCHEMA = defineLimits({
  maxConnections: count(16_384, 'concurrent captured outbound connections; more are reset and counted'),
  connectTimeoutMs: duration(10_000, 'a passthrough destination must accept within this'),
  idleTimeoutMs: durationOrNever(60 * 60_000, 'a passthrough connection silent both ways this long is closed (0: never)'),
});

/** Every schema of the data plane, by the name the doc table gives it. */
export const DATA_PLANE_LIMIT_SCHEMAS = Object.freeze({
  sidecar: PROXY_LIMIT_SCHEMA,
  'outbound HTTP listener': OUTBOUND_HTTP_LIMIT_SCHEMA,
  'HTTP lanes': LANE_LIMIT_SCHEMA,
  'inbound app pool': APP_POOL_LIMIT_SCHEMA,
  'inbound h2c app pool': H2C_POOL_LIMIT_SCHEMA,
  'inbound capture': CAPTURE_LIMIT_SCHEMA,
  'outbound capture': TRANSPARENT_LIMIT_SCHEMA,
});

export type ProxyLimits = LimitValues<typeof PROXY_LIMIT_SCHEMA>;

export const DEFAULT_LIMITS: ProxyLimits = limitDefaults(PROXY_LIMIT_SCHEMA);
export const OUTBOUND_HTTP_DEFAULTS = limitDefaults(OUTBOUND_HTTP_LIMIT_SCHEMA);
export const LANE_DEFAULTS = limitDefaults(LANE_LIMIT_SCHEMA);
export const APP_POOL_DEFAULTS = limitDefaults(APP_POOL_LIMIT_SCHEMA);
export const H2C_POOL_DEFAULTS = limitDefaults(H2C_POOL_LIMIT_SCHEMA);
export const CAPTURE_DEFAULTS = limitDefaults(CAPTURE_LIMIT_SCHEMA);
export const TRANSPARENT_DEFAULTS = limitDefaults(TRANSPARENT_LIMIT_SCHEMA);

export function resolveLimits(overrides: Partial<ProxyLimits> = {}): ProxyLimits {
  return withOverrides(DEFAULT_LIMITS, overrides);
}
