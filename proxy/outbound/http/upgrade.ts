/**
 * An HTTP/1.1 upgrade (WebSocket and the like) from the app, carried as a CONNECT stream whose first
 * bytes are the original request head, so the inbound sidecar can authorize it by method and path
 * before the destination app sees it (see proxy/inbound/http/upgrade.ts).
 *
 * The app's socket is not read until the peer answers 200: until then the only bytes on the stream are
 * the head we hold, so a failure to reach an endpoint (or a refused stream) is retried on another one.
 * A non-200 answer (403 denied, 502/503/504) becomes an HTTP/1.1 response with `Connection: close`.
 * An upgrade no port may carry (h2c, http/upgrade-rules.ts) is refused here with 400 before any
 * endpoint is picked; which other protocols a port takes is the inbound's to judge.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../../core/correlation.js';
import { formatAuthority } from '../../core/destination.js';
import { HTTP_FAILURES, HttpFailure, type HttpFailureKind } from '../../http/errors.js';
import { acceptableRequestId, connectionTokenList, forbiddenConnectionToken, h2ResponseToH1, isMeshHeader, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import { failureResponseBytes } from '../../http1/message.js';
import { upgradeRequestProblem } from '../../http/upgrade-rules.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import type { PoolTarget } from '../tunnel-client/session-pool.js';
import { splice } from '../../core/splice.js';
import { TARGET_HEADER } from '../../core/tunnel-protocol.js';
import type { OutboundHttpDeps } from './deps.js';
import { routeTargetPort, type OutboundRoute } from '../route.js';

const CRLF = '\r\n';

interface UpgradeState {
  readonly socket: Socket;
  readonly route: OutboundRoute;
  readonly deps: OutboundHttpDeps;
  readonly requestHead: Buffer;
  readonly head: Buffer;
  readonly headers: OutgoingHttpHeaders;
  readonly correlationId: string;
  readonly started: number;
  readonly method: string;
  readonly path: string;
  tried: Set<string> | undefined;
  attempts: number;
  endpoint: BalancedEndpoint | undefined;
  status: number;
  gone: boolean;
}

/** The request head as the app sent it (node keeps the raw header lines), for the inbound to parse again. */
function serializeHead(req: IncomingMessage, correlationId: string): Buffer {
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}${CRLF}`;
  const raw = req.rawHeaders;
  let hasId = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (isMeshHeader(lower)) continue;
    if (lower === REQUEST_ID_HEADER) hasId = true;
    text += `${name}: ${raw[i + 1] as string}${CRLF}`;
  }
  if (!hasId) text += `X-Request-Id: ${correlationId}${CRLF}`;
  return Buffer.from(text + CRLF, 'latin1');
}

export function forwardHttpUpgrade(req: IncomingMessage, socket: Socket, head: Buffer, route: OutboundRoute, deps: OutboundHttpDeps): void {
  const correlationId = acceptableRequestId(req.headers[REQUEST_ID_HEADER]) ?? nextCorrelationId();
  const authority = formatAuthority({ service: route.service, namespace: route.namespace, port: route.targetPort });
  socket.setNoDelay(true);
  socket.on('error', noop);
  const state: UpgradeState = {
    socket,
    route,
    deps,
    requestHead: serializeHead(req, correlationId),
    head,
    headers: { ':method': 'CONNECT', ':authority': authority, [TARGET_HEADER]: authority, [REQUEST_ID_HEADER]: correlationId },
    correlationId,
    started: performance.now(),
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    tried: undefined,
    attempts: 0,
    endpoint: undefined,
    status: 0,
    gone: false,
  };
  socket.once('close', () => {
    state.gone = true;
  });
  // Judged before any byte leaves: what no port may carry (h2c), and a Connection naming a framing field.
  const named = forbiddenConnectionToken(connectionTokenList(req.headers.connection), false);
  if (named !== undefined) {
    answer(state, HTTP_FAILURES.badRequest, `Connection names ${named}`);
    return;
  }
  const problem = upgradeRequestProblem(req.headers.upgrade, req.headers['http2-settings'] !== undefined, undefined);
  if (problem !== undefined) {
    answer(state, HTTP_FAILURES.upgradeRefused, problem);
    return;
  }
  attempt(state);
}

function attempt(s: UpgradeState): void {
  const endpoint = s.deps.balancer.pick(s.route.service, s.route.namespace, s.tried, s.route.servicePort);
  if (endpoint === undefined) {
    answer(s, s.tried === undefined ? HTTP_FAILURES.noEndpoint : HTTP_FAILURES.upstreamConnect);
    return;
  }
  s.attempts += 1;
  s.endpoint = endpoint;
  s.deps.balancer.begin(endpoint);
  // Each endpoint at its own app port (instances of one service may listen on different ones).
  const port = routeTargetPort(s.route, endpoint.endpoint);
  const authority = port === s.route.targetPort ? undefined : formatAuthority({ service: s.route.service, namespace: s.route.namespace, port });
  const headers = authority === undefined ? s.headers : { ...s.headers, ':authority': authority, [TARGET_HEADER]: authority };
  const target: PoolTarget = { endpoint: endpoint.endpoint, service: s.route.service, namespace: s.route.namespace, port };
  s.deps.pool.openStream(target, headers).then(
    (stream) => attach(s, stream),
    (err: unknown) => retryOrFail(s, (err as { retryable?: unknown }).retryable === true),
  );
}

function release(s: UpgradeState, ok: boolean): void {
  const endpoint = s.endpoint;
  if (endpoint === undefined) return;
  s.endpoint = undefined;
  s.deps.balancer.end(endpoint, ok);
  (s.tried ??= new Set()).add(endpoint.key);
}

function retryOrFail(s: UpgradeState, retryable: boolean): void {
  release(s, false);
  if (s.gone) return;
  if (retryable && s.attempts < s.deps.limits.maxAttempts) attempt(s);
  else answer(s, HTTP_FAILURES.upstreamConnect);
}

function attach(s: UpgradeState, stream: ClientHttp2Stream): void {
  if (s.gone) {
    stream.close(h2.NGHTTP2_CANCEL);
    release(s, true);
    return;
  }
  stream.on('error', noop);
  let answered = false;
  stream.once('close', () => {
    if (answered) return;
    // No answer to the CONNECT: a refused stream was not processed and may go elsewhere.
    const refused = stream.rstCode === h2.NGHTTP2_REFUSED_STREAM;
    if (refused) retryOrFail(s, true);
    else {
      release(s, false);
      answer(s, HTTP_FAILURES.upstreamReset);
    }
  });
  stream.once('response', (headers: IncomingHttpHeaders) => {
    answered = true;
    const status = Number(headers[':status']);
    if (status === 200) {
      s.status = 101;
      // An upgraded connection has an idle timeout, never a request timeout: the destination's, when a TimeoutPolicy sets one.
      const idle = s.deps.traffic?.idleTimeoutMs(s.route.namespace, s.route.service, s.deps.limits.upgradeIdleTimeoutMs) ?? s.deps.limits.upgradeIdleTimeoutMs;
      splice(s.socket, stream, idle, (result) => {
        const endpoint = s.endpoint;
        if (endpoint !== undefined) {
          s.endpoint = undefined;
          s.deps.balancer.end(endpoint, result !== 'peer-reset');
        }
        record(s);
      });
      return;
    }
    // A refusal or failure: tell the app in HTTP/1.1 and close; the short body follows as sent.
    s.status = status;
    release(s, status < 502 || status > 504);
    if (s.gone) return;
    let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}${CRLF}`;
    const out = h2ResponseToH1(headers);
    for (const name in out) {
      const value = out[name];
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) text += `${name}: ${v}${CRLF}`;
      else text += `${name}: ${String(value)}${CRLF}`;
    }
    s.socket.write(`${text}connection: close${CRLF}${CRLF}`);
    stream.pipe(s.socket);
    stream.once('close', () => record(s));
  });
  stream.write(s.requestHead);
  if (s.head.length > 0) stream.write(s.head);
}

/** Answers the app without the tunnel (no endpoint, none reachable) and closes its connection. */
function answer(s: UpgradeState, kind: HttpFailureKind, detail?: string): void {
  const failure = new HttpFailure(kind, detail);
  s.status = failure.status;
  if (!s.gone && !s.socket.destroyed) s.socket.end(failureResponseBytes(failure, s.correlationId, true));
  s.deps.logger.warn({ correlationId: s.correlationId, destination: `${s.route.namespace}/${s.route.service}`, code: failure.code, detail }, 'HTTP upgrade not delivered');
  record(s);
}

function record(s: UpgradeState): void {
  const seconds = (performance.now() - s.started) / 1000;
  const destination = `${s.route.namespace}/${s.route.service}`;
  const status = s.status === 0 ? 499 : s.status;
  s.deps.httpMetrics.record('outbound', s.deps.sourceLabel, destination, status, seconds);
  if (s.deps.accessLog) {
    s.deps.logger.info(
      { direction: 'outbound', upgrade: true, correlationId: s.correlationId, source: s.deps.sourceLabel, destination, method: s.method, path: s.path, status, ms: Math.round(seconds * 1000) },
      'http access',
    );
  }
}

function noop(): void {}
