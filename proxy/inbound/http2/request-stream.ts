/**
 * One HTTP/2 request from the tunnel delivered to the local app over HTTP/2 (h2c): on ports declared
 * `http2` or `grpc`, and on `http` ports for callers that spoke HTTP/2 (`trellis-app-protocol: h2`).
 *
 * As on the HTTP/1.1 path (inbound/http/request-stream.ts), nothing reaches the app before the request is
 * authorized on its normalised path (the app receives that path); a denial of a gRPC call is the gRPC
 * status PERMISSION_DENIED with the deciding rule in `grpc-message` (callers are authenticated sidecars,
 * so naming the rule leaks nothing), other requests get the usual 403. The stream is tracked, so a policy
 * change that denies it now cuts it: a gRPC call ends with PERMISSION_DENIED, anything else is reset.
 * Bodies and trailers pass both ways with HTTP/2 flow control on each hop (http2/relay.ts).
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { nextCorrelationId } from '../../core/correlation.js';
import { cancelStream, pipeUntilCleanEnd } from '../../core/stream-reset.js';
import { DENIED_BY_HEADER } from '../../core/tunnel-protocol.js';
import { appFailure, HTTP_FAILURES, HttpFailure } from '../../http/errors.js';
import { acceptableRequestId, REQUEST_ID_HEADER } from '../../http/header-rules.js';
import { isGrpcRequest } from '../../http2/grpc.js';
import { trailerFields, tunnelRequestToApp } from '../../http2/headers.js';
import { ResponseRelay } from '../../http2/relay.js';
import { grpcMethodOfPath } from '../../../policy/index.js';
import { deciderOf } from '../authorize.js';
import { appHttpOptions, authorizeHttp, forwardTarget, httpAuthorizationRequest } from '../http/authorization.js';
import type { InboundHttpContext } from '../http/context.js';
import { recordInboundRequest } from '../http/access.js';
import type { H2cAppPools } from './h2c-pool.js';

class InboundH2Exchange {
  readonly started = performance.now();
  readonly relay: ResponseRelay;
  app: ClientHttp2Stream | undefined;
  code: string | undefined;
  untrack: (() => void) | undefined;
  requestTrailers: IncomingHttpHeaders | undefined;
  finished = false;
  /** Cut by a policy change: the app's stream is cancelled, and that is not an app failure. */
  cut = false;

  constructor(
    readonly stream: ServerHttp2Stream,
    readonly ctx: InboundHttpContext,
    readonly correlationId: string,
    readonly method: string,
    readonly path: string,
    grpc: boolean,
  ) {
    this.relay = new ResponseRelay(stream, grpc, true);
  }
}

export function handleInboundH2Stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ctx: InboundHttpContext, pools: H2cAppPools): void {
  stream.on('error', noop);
  const correlationId = acceptableRequestId(headers[REQUEST_ID_HEADER]) ?? nextCorrelationId();
  const method = headers[':method'];
  const target = headers[':path'];
  const grpc = ctx.appPort.protocol === 'grpc' || isGrpcRequest(headers);
  const x = new InboundH2Exchange(stream, ctx, correlationId, typeof method === 'string' ? method : '-', typeof target === 'string' ? target : '-', grpc);
  stream.once('close', () => finish(x));
  if (typeof method !== 'string' || typeof target !== 'string' || method === 'CONNECT') {
    refuse(x, new HttpFailure(HTTP_FAILURES.badRequest, method === 'CONNECT' ? `app port ${ctx.appPort.port} takes HTTP/2 requests, not CONNECT` : 'missing :method or :path'));
    return;
  }
  const targets = forwardTarget(method, target, appHttpOptions(ctx.appPort));
  if (targets === null) {
    refuse(x, new HttpFailure(HTTP_FAILURES.badPath));
    return;
  }
  const authRequest = httpAuthorizationRequest(ctx, method, targets.policyPath);
  const decision = authorizeHttp(ctx, authRequest, correlationId);
  if (!decision.allowed) {
    const decidedBy = deciderOf(decision);
    refuse(x, new HttpFailure(HTTP_FAILURES.denied, `${decision.reason} (${decidedBy})`), decidedBy);
    return;
  }
  x.untrack = ctx.deps.track?.({
    request: authRequest,
    cut: (why) => {
      // Permission revoked mid-call: a gRPC caller learns it as PERMISSION_DENIED, others by a reset.
      x.code = HTTP_FAILURES.denied.code;
      x.cut = true;
      if (x.relay.grpc) x.relay.fail(new HttpFailure(HTTP_FAILURES.denied, `permission revoked: ${why}`), correlationId);
      else cancelStream(stream);
      if (x.app !== undefined) cancelStream(x.app);
    },
  });
  if (!stream.endAfterHeaders) stream.once('trailers', (trailers: IncomingHttpHeaders) => (x.requestTrailers = trailers));
  const appHeaders = tunnelRequestToApp(headers, targets.forwardPath, correlationId, ctx.peer.spiffeId);
  const options = stream.endAfterHeaders ? { endStream: true } : { endStream: false, waitForTrailers: true };
  pools.for(ctx.appPort).openStream(appHeaders, options, (app) => attach(x, app), (err) => {
    if (!x.finished) fail(x, appFailure(err, false, false));
  });
}

function attach(x: InboundH2Exchange, app: ClientHttp2Stream): void {
  if (x.finished || x.stream.destroyed) {
    cancelStream(app);
    return;
  }
  x.app = app;
  app.on('error', noop);
  app.on('headers', (headers: IncomingHttpHeaders) => x.relay.interim(headers));
  app.once('response', (headers: IncomingHttpHeaders, flags: number) => x.relay.start(app, headers, flags));
  app.once('close', () => onAppClose(x, app));
  if (!x.stream.endAfterHeaders) {
    app.once('wantTrailers', () => {
      if (!app.destroyed && !app.closed) app.sendTrailers(x.requestTrailers === undefined ? {} : trailerFields(x.requestTrailers, true, false));
    });
    pipeUntilCleanEnd(x.stream, app);
  }
}

function onAppClose(x: InboundH2Exchange, app: ClientHttp2Stream): void {
  const rst = app.rstCode ?? h2.NGHTTP2_NO_ERROR;
  if (x.finished || x.cut || (rst === h2.NGHTTP2_NO_ERROR && x.relay.responded)) return;
  x.stream.unpipe(app);
  // The app reset the stream or its connection went away (GOAWAY past this stream, a crash).
  const failure = rst === h2.NGHTTP2_REFUSED_STREAM ? new HttpFailure(HTTP_FAILURES.appUnavailable, 'the app refused the stream') : new HttpFailure(HTTP_FAILURES.appReset, `RST_STREAM ${rst}`);
  fail(x, failure);
}

function fail(x: InboundH2Exchange, failure: HttpFailure): void {
  x.code = failure.code;
  x.ctx.deps.logger.warn({ correlationId: x.correlationId, code: failure.code, err: failure.message, port: x.ctx.appPort.port }, 'HTTP/2 request to app failed');
  x.relay.fail(failure, x.correlationId);
}

function refuse(x: InboundH2Exchange, failure: HttpFailure, decidedBy?: string): void {
  x.code = failure.code;
  x.relay.fail(failure, x.correlationId, decidedBy === undefined ? undefined : { [DENIED_BY_HEADER]: decidedBy });
}

function finish(x: InboundH2Exchange): void {
  if (x.finished) return;
  x.finished = true;
  x.untrack?.();
  const app = x.app;
  // The caller went away (or the stream was reset) before the exchange completed: cancel the app's stream.
  if (app !== undefined && !app.destroyed && !(app.readableEnded && app.writableFinished)) cancelStream(app);
  const complete = x.stream.rstCode === undefined || x.stream.rstCode === h2.NGHTTP2_NO_ERROR;
  const status = x.relay.status === 0 ? 499 : x.relay.status;
  const query = x.path.indexOf('?');
  const grpc = x.relay.grpc ? { status: x.relay.grpcStatus ?? (complete ? '2' : '1'), method: grpcMethodOfPath(query < 0 ? x.path : x.path.slice(0, query)) ?? '-' } : undefined;
  recordInboundRequest(x.ctx.deps, { peer: x.ctx.peer, local: x.ctx.state.local, correlationId: x.correlationId, method: x.method, path: x.path, status, code: x.code, started: x.started }, grpc);
}

function noop(): void {}
