/**
 * The wire protocol between sidecars, as constants both sides share (docs/architecture.md, "Proxy").
 *
 * TLS 1.3 only, client certificate required, ALPN `h2`, one tunnel port per workload. A proxied TCP
 * connection is one HTTP/2 CONNECT stream whose `:authority` is `<service>.<namespace>:<targetPort>`.
 * The inbound side answers 200 only once the app accepted the connection, so the outbound side may retry
 * another endpoint when a CONNECT fails: no app byte has been sent before 200. HTTP requests are ordinary
 * HTTP/2 requests with a `trellis-target` header naming the same destination, or, on the fast path, raw
 * HTTP/1.1 messages on a "lane": a CONNECT stream marked `trellis-lane: http/1.1` that carries one
 * kept-alive HTTP/1.1 connection (docs/architecture.md, "HTTP lanes").
 */
import { constants as h2 } from 'node:http2';

export const DEFAULT_TUNNEL_PORT = 15008;
export const DEFAULT_ADMIN_PORT = 15000;
export const TUNNEL_ALPN = 'h2';

/** Names the destination of a (non-CONNECT) HTTP request on the tunnel: `<service>.<namespace>:<port>`. */
export const TARGET_HEADER = 'trellis-target';
/** Marks a CONNECT stream as an HTTP/1.1 lane: many requests in turn, each authorized on its own. */
export const LANE_HEADER = 'trellis-lane';
export const LANE_HTTP1 = 'http/1.1';
/**
 * On an HTTP/2 request: the calling app spoke HTTP/2, so the destination app is reached over HTTP/2 (h2c)
 * too, also on an `http` port (Istio's `useClientProtocol`); on `http2` and `grpc` ports it always is.
 */
export const APP_PROTOCOL_HEADER = 'trellis-app-protocol';
export const APP_PROTOCOL_H2 = 'h2';
/** On a refusal: `<namespace>/<policy>#<rule>` or `default-deny`; only ever sent to authenticated peers. */
export const DENIED_BY_HEADER = 'trellis-denied-by';
/** A correlation id on every refusal and error, also in the log line that explains it. */
export const CORRELATION_HEADER = 'trellis-correlation-id';
/** A refused stream's short machine-readable reason (`policy-denied`, `app-unreachable`, ...), from its code. */
export const REASON_HEADER = 'trellis-reason';

/** A CONNECT accepted (the app took the connection); a refusal's status is its registry entry's (http/errors.ts). */
export const STATUS_OK = 200;
/** A refusal by policy: the outbound does not retry it elsewhere. */
export const STATUS_FORBIDDEN = 403;

/** RST_STREAM codes used to propagate a TCP reset or a policy cut across the tunnel. */
export const RST_CONNECT_ERROR = h2.NGHTTP2_CONNECT_ERROR;
export const RST_CANCEL = h2.NGHTTP2_CANCEL;
export const RST_REFUSED = h2.NGHTTP2_REFUSED_STREAM;
export const RST_NO_ERROR = h2.NGHTTP2_NO_ERROR;
