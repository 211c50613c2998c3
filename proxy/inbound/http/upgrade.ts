/**
 * Tunnelled HTTP upgrades (WebSocket and the like) at the inbound sidecar.
 *
 * The outbound sidecar carries an upgrade as a CONNECT stream whose first bytes are the caller's original
 * HTTP/1.1 upgrade request. Here that head is parsed by node's own HTTP parser (llhttp, bounded by
 * `maxUpgradeHeadBytes` and a head timeout) through a server that never listens: a tunnel stream is a
 * Duplex, which node:http accepts as a connection. The request is authorized by method and path like any
 * other, then replayed to the app on a dedicated connection.
 *
 * Before that, the upgrade itself is judged (http/upgrade-rules.ts): h2c never, other protocols only
 * when the app port lists them (WebSocket by default), else 400 `TRELLIS_HTTP_UPGRADE_REFUSED`; and the
 * app's 101 must switch to a protocol that was requested, else 502.
 *
 * Only a real switch (101) turns the stream into an opaque byte pipe. When the app declines, its answer
 * is relayed with `Connection: close` and the stream ends: a caller cannot slip further requests past
 * authorization on a tunnel that never upgraded.
 */
import { createServer, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AuthorizationRequest } from '../../../policy/types.js';
import { constants as h2, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { nextCorrelationId } from '../../core/correlation.js';
import { serviceLabel } from '../../core/peer-identity.js';
import { splice } from '../../core/splice.js';
import { closeStream } from '../../core/stream-reset.js';
import { DENIED_BY_HEADER } from '../../core/tunnel-protocol.js';
import { acceptableRequestId, CLIENT_CERT_HEADER, connectionTokenList, forbiddenConnectionToken, isConnectionField, isFramingField, isMeshHeader, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import { switchAccepted, upgradeRequestProblem } from '../../http/upgrade-rules.js';
import { appFailure, failureBody, failureHeaders, HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { appHttpOptions, authorizeHttp, forwardTarget, httpAuthorizationRequest } from './authorization.js';
import type { InboundHttpContext } from './context.js';
import { deciderOf } from '../authorize.js';
import { appLocalAddress } from '../app-source.js';

const CRLF = '\r\n';

interface UpgradeState {
  readonly ctx: InboundHttpContext;
  readonly correlationId: string;
  readonly started: number;
  readonly timer: NodeJS.Timeout;
  method: string;
  path: string;
  status: number;
  untrack: (() => void) | undefined;
}

const states = new WeakMap<object, UpgradeState>();
/** One parser per head limit; they hold no sockets of their own. */
const parsers = new Map<number, Server>();

function parserFor(maxHeadBytes: number): Server {
  let parser = parsers.get(maxHeadBytes);
  if (parser === undefined) {
    parser = createServer({ maxHeaderSize: maxHeadBytes, noDelay: false });
    parser.on('upgrade', onUpgradeHead);
    parser.on('request', onPlainRequest);
    parser.on('clientError', onBadHead);
    parsers.set(maxHeadBytes, parser);
  }
  return parser;
}

export function handleInboundUpgradeStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ctx: InboundHttpContext): void {
  const correlationId = acceptableRequestId(headers[REQUEST_ID_HEADER]) ?? nextCorrelationId();
  const timer = setTimeout(() => {
    const state = states.get(stream);
    if (state !== undefined) answer(stream, state, new HttpFailure(HTTP_FAILURES.badRequest, 'no upgrade request head within the timeout'));
  }, ctx.deps.upgradeHeadTimeoutMs);
  const state: UpgradeState = { ctx, correlationId, started: performance.now(), timer, method: 'CONNECT', path: '-', status: 0, untrack: undefined };
  states.set(stream, state);
  stream.on('error', noop);
  stream.once('close', () => finish(state));
  parserFor(ctx.deps.maxUpgradeHeadBytes).emit('connection', stream);
}

function onUpgradeHead(req: IncomingMessage, socket: Socket, head: Buffer): void {
  const stream = socket as unknown as ServerHttp2Stream;
  const state = states.get(stream);
  if (state === undefined) return;
  clearTimeout(state.timer);
  const { ctx } = state;
  const method = req.method ?? 'GET';
  state.method = method;
  const judged = judgeUpgrade(req, method, state);
  if (!judged.allowed) {
    answer(stream, state, judged.failure, judged.decidedBy);
    return;
  }
  const { targets, authz } = judged;
  const headers: OutgoingHttpHeaders = {};
  for (const name in req.headers) if (!isMeshHeader(name)) headers[name] = req.headers[name];
  headers[REQUEST_ID_HEADER] = state.correlationId;
  headers[CLIENT_CERT_HEADER] = `URI=${ctx.peer.spiffeId}`;
  const appReq = httpRequest({
    host: ctx.appPort.host,
    port: ctx.appPort.port,
    method,
    path: targets.forwardPath,
    headers,
    setHost: false,
    agent: false,
    timeout: ctx.deps.pools.limits.connectTimeoutMs,
    maxHeaderSize: ctx.deps.pools.limits.maxHeaderBytes,
    localAddress: appLocalAddress(ctx.appPort.host, ctx.deps.appSource),
  });
  let timedOut = false;
  let connected = false;
  appReq.once('socket', (s: Socket) => s.once('connect', () => (connected = true)));
  appReq.once('timeout', () => {
    timedOut = true;
    appReq.destroy();
  });
  appReq.on('error', (err) => {
    if (!stream.headersSent) answer(stream, state, appFailure(err, timedOut, connected));
    else closeStream(stream, h2.NGHTTP2_INTERNAL_ERROR);
  });
  relayAppAnswer(appReq, req, head, stream, state, authz);
  appReq.end();
}

/**
 * The app's answer: a 101 to a requested protocol turns the stream into a byte pipe (re-judged when the
 * policy changes); any other answer is relayed close-delimited and the stream ends.
 */
function relayAppAnswer(appReq: ClientRequest, req: IncomingMessage, head: Buffer, stream: ServerHttp2Stream, state: UpgradeState, authz: AuthorizationRequest): void {
  const { ctx } = state;
  appReq.once('upgrade', (res: IncomingMessage, appSocket: Socket, appHead: Buffer) => {
    appSocket.setTimeout(0);
    appSocket.setNoDelay(true);
    if (stream.destroyed) {
      appSocket.destroy();
      return;
    }
    if (!switchAccepted(req.headers.upgrade, res.headers.upgrade)) {
      // A switch to a protocol nobody asked for (and so nobody authorized): the bytes that would follow are
      // not carried.
      appSocket.destroy();
      answer(stream, state, new HttpFailure(HTTP_FAILURES.appBadResponse, `101 to ${String(res.headers.upgrade)}, not a requested protocol`));
      return;
    }
    state.status = res.statusCode ?? 101;
    stream.respond({ ':status': 200 });
    stream.write(statusHead(res, false));
    if (appHead.length > 0) stream.write(appHead);
    if (head.length > 0) appSocket.write(head);
    splice(appSocket, stream, ctx.deps.upgradeIdleTimeoutMs, noop);
    state.untrack = ctx.deps.track?.({
      request: authz,
      cut: (why) => {
        ctx.deps.logger.warn({ correlationId: state.correlationId, reason: why }, 'upgraded HTTP stream cut');
        closeStream(stream, h2.NGHTTP2_CANCEL);
        appSocket.destroy();
      },
    });
  });
  appReq.once('response', (res: IncomingMessage) => {
    // The app declined the upgrade: relay its answer as a close-delimited response, then end.
    state.status = res.statusCode ?? 502;
    if (stream.destroyed) {
      res.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    stream.write(statusHead(res, true));
    res.on('error', noop);
    res.pipe(stream);
  });
}

type UpgradeJudgement =
  | { readonly allowed: false; readonly failure: HttpFailure; readonly decidedBy?: string }
  | { readonly allowed: true; readonly targets: { readonly policyPath: string; readonly forwardPath: string }; readonly authz: AuthorizationRequest };

/** The rules every request meets (Connection, the upgrade rule, the path policy), then the policy in force. */
function judgeUpgrade(req: IncomingMessage, method: string, state: UpgradeState): UpgradeJudgement {
  const { ctx } = state;
  const named = forbiddenConnectionToken(connectionTokenList(req.headers.connection), false);
  if (named !== undefined) return { allowed: false, failure: new HttpFailure(HTTP_FAILURES.badRequest, `Connection names ${named}`) };
  const options = appHttpOptions(ctx.appPort);
  const upgradeProblem = upgradeRequestProblem(req.headers.upgrade, req.headers['http2-settings'] !== undefined, options.upgradeProtocols);
  if (upgradeProblem !== undefined) return { allowed: false, failure: new HttpFailure(HTTP_FAILURES.upgradeRefused, upgradeProblem) };
  const targets = forwardTarget(method, req.url ?? '', options);
  if (targets === null) return { allowed: false, failure: new HttpFailure(HTTP_FAILURES.badPath) };
  state.path = targets.policyPath;
  const authz = httpAuthorizationRequest(ctx, method, targets.policyPath);
  const decision = authorizeHttp(ctx, authz, state.correlationId);
  if (!decision.allowed) {
    const decidedBy = deciderOf(decision);
    return { allowed: false, failure: new HttpFailure(HTTP_FAILURES.denied, `${decision.reason} (${decidedBy})`), decidedBy };
  }
  return { allowed: true, targets, authz };
}

/** A status line and header block for the raw tunnel; `declined` answers get close-delimited framing. */
function statusHead(res: IncomingMessage, declined: boolean): string {
  let text = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}${CRLF}`;
  const raw = res.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (declined) {
      const lower = name.toLowerCase();
      if (isConnectionField(lower) || isFramingField(lower)) continue;
    }
    text += `${name}: ${raw[i + 1] as string}${CRLF}`;
  }
  if (declined) text += `Connection: close${CRLF}`;
  return text + CRLF;
}

function onPlainRequest(req: IncomingMessage): void {
  const stream = req.socket as unknown as ServerHttp2Stream;
  const state = states.get(stream);
  if (state === undefined) return;
  clearTimeout(state.timer);
  state.method = req.method ?? '-';
  answer(stream, state, new HttpFailure(HTTP_FAILURES.badRequest, 'a tunnelled stream must start with an upgrade request'));
}

function onBadHead(err: Error & { code?: string }, socket: unknown): void {
  const stream = socket as ServerHttp2Stream;
  const state = states.get(stream);
  if (state === undefined) return;
  clearTimeout(state.timer);
  const failure = err.code === 'HPE_HEADER_OVERFLOW' ? HTTP_FAILURES.headTooLarge : HTTP_FAILURES.badRequest;
  answer(stream, state, new HttpFailure(failure, err.code));
}

/** Answers the CONNECT itself (refusal or failure): the outbound turns this into the caller's response. */
function answer(stream: ServerHttp2Stream, state: UpgradeState, failure: HttpFailure, decidedBy?: string): void {
  clearTimeout(state.timer);
  state.status = failure.status;
  if (stream.destroyed || stream.headersSent) {
    closeStream(stream, h2.NGHTTP2_CANCEL);
    return;
  }
  const body = failureBody(failure, state.correlationId);
  const headers = failureHeaders(failure, state.correlationId, body, true);
  if (decidedBy !== undefined) headers[DENIED_BY_HEADER] = decidedBy;
  stream.respond(headers);
  stream.end(body);
  stream.once('finish', () => {
    if (!stream.destroyed) stream.close(h2.NGHTTP2_NO_ERROR);
  });
}

function finish(state: UpgradeState): void {
  clearTimeout(state.timer);
  state.untrack?.();
  const { ctx } = state;
  const seconds = (performance.now() - state.started) / 1000;
  const status = state.status === 0 ? 499 : state.status;
  const source = serviceLabel(ctx.peer);
  const destination = serviceLabel(ctx.state.local);
  ctx.deps.httpMetrics.record('inbound', source, destination, status, seconds);
  if (ctx.deps.accessLog) {
    ctx.deps.logger.info(
      { direction: 'inbound', upgrade: true, correlationId: state.correlationId, source, destination, method: state.method, path: state.path, status, ms: Math.round(seconds * 1000) },
      'http access',
    );
  }
}

function noop(): void {}
