/**
 * One client request through the gateway, HTTP/1.1 or HTTP/2 alike (node's compat API gives both the
 * same shape): host and path checked and normalised, the route found, the edge checks of the route run
 * (edge.ts: CORS, JWT, rate limit), then a redirect answered or the request forwarded to the mesh
 * (forwarder.ts). Every outcome is one access line and one count.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { nextCorrelationId } from '../proxy/core/correlation.js';
import type { HttpFailure } from '../proxy/http/errors.js';
import { normalizeRequestPath } from '../policy/http-match.js';
import type { TrafficRequest } from '../policy/traffic/route-match.js';
import { clientView, type ClientView } from './client-headers.js';
import type { GatewayConfig, ListenerSpec, RedirectSpec } from './config-types.js';
import { gatewayFailure, respondFailure, type ClientResponse } from './failure.js';
import { requestHost } from './host-match.js';
import type { GatewayMetrics } from './metrics.js';
import type { CompiledRoute, RouteTable } from './route-table.js';

export type ClientRequest = IncomingMessage | Http2ServerRequest;

/** What a request carries from check to check. */
export interface Exchange {
  readonly listener: ListenerSpec;
  readonly req: ClientRequest;
  readonly res: ClientResponse;
  readonly correlationId: string;
  readonly started: number;
  readonly host: string;
  /** Normalised, without query. */
  readonly path: string;
  /** After "?", "" when none. */
  readonly query: string;
  readonly view: ClientView;
  /** Headers the edge checks set for the app (claims), replacing any client copy. */
  readonly setHeaders: Record<string, string>;
}

/** The route's edge checks (edge.ts); `admit` answers itself (preflight, refusal) and returns false, or true to go on. */
export interface EdgeChecks {
  admit(route: CompiledRoute, ex: Exchange): Promise<boolean>;
}

export interface Forward {
  forward(route: CompiledRoute, ex: Exchange, done: (status: number, upstream: string) => void): void;
  /** A WebSocket upgrade, admitted: splice the client's socket to the mesh (websocket.ts). */
  upgrade(route: CompiledRoute, ex: Exchange, socket: Socket, head: Buffer, done: (status: number, upstream: string) => void): void;
}

/** An upgrade request's raw socket and the bytes read past its head. */
export interface UpgradeContext {
  readonly socket: Socket;
  readonly head: Buffer;
}

export interface HandlerState {
  readonly config: GatewayConfig;
  readonly routes: RouteTable;
  readonly edge: EdgeChecks;
}

export interface HandlerDeps {
  readonly state: () => HandlerState;
  readonly forward: Forward;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
}

function headerValues(req: ClientRequest): (name: string) => readonly string[] {
  return (name) => {
    const v = req.headers[name];
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  };
}

export function createRequestHandler(deps: HandlerDeps, listener: ListenerSpec): (req: ClientRequest, res: ClientResponse, upgrade?: UpgradeContext) => void {
  const { metrics, log } = deps;
  return (req, res, upgrade) => {
    const state = deps.state();
    const correlationId = nextCorrelationId();
    const started = performance.now();
    const finish = (route: string, upstream: string, status: number): void => {
      const seconds = (performance.now() - started) / 1000;
      metrics.requests.inc({ listener: listener.name, route, upstream, status_code: String(status) });
      metrics.duration.observe({ listener: listener.name, route, upstream }, seconds);
      if (state.config.accessLog) log.info({ listener: listener.name, route, upstream, method: req.method, path: req.url?.slice(0, 256), status, client: view.client, ms: Math.round(seconds * 1000), correlationId }, 'gateway request');
    };
    const refuse = (route: string, reason: string, failure: HttpFailure, extra?: Record<string, string>): void => {
      metrics.refusals.inc({ listener: listener.name, route, reason });
      respondFailure(res, failure, correlationId, extra);
      finish(route, 'none', failure.status);
    };
    const view = clientView(req.socket?.remoteAddress ?? 'unknown', req.headers['x-forwarded-for'], state.config.trustedHops);
    const authority = (req.headers[':authority'] as string | undefined) ?? req.headers.host;
    const host = requestHost(authority);
    const target = req.url ?? '';
    const path = target.startsWith('/') ? normalizeRequestPath(target) : null;
    if (host === undefined || path === null) {
      refuse('none', 'bad-request', gatewayFailure('GATEWAY_BAD_REQUEST', host === undefined ? 'missing or malformed Host' : 'a path that cannot be normalised'));
      return;
    }
    const q = target.indexOf('?');
    const query = q < 0 ? '' : target.slice(q + 1);
    const traffic: TrafficRequest = { method: req.method ?? 'GET', path, query, headerValues: headerValues(req) };
    const route = state.routes.find(listener.name, host, traffic);
    if (route === undefined) {
      refuse('none', 'no-route', gatewayFailure('GATEWAY_NO_ROUTE', `${host}${path}`));
      return;
    }
    const ex: Exchange = { listener, req, res, correlationId, started, host, path, query, view, setHeaders: {} };
    const name = route.spec.name;
    state.edge.admit(route, ex).then(
      (go) => {
        if (!go) return finish(name, 'none', res.statusCode);
        if (route.spec.redirect !== undefined) {
          redirect(ex, route.spec.redirect);
          return finish(name, 'none', route.spec.redirect.status);
        }
        if (upgrade !== undefined) deps.forward.upgrade(route, ex, upgrade.socket, upgrade.head, (status, upstream) => finish(name, upstream, status));
        else deps.forward.forward(route, ex, (status, upstream) => finish(name, upstream, status));
      },
      (err: unknown) => {
        log.error({ err: (err as Error).message, route: name, correlationId }, 'edge check failed');
        refuse(name, 'internal', gatewayFailure('GATEWAY_UPSTREAM_FAILED', 'edge check failed'));
      },
    );
  };
}

function redirect(ex: Exchange, spec: RedirectSpec): void {
  const scheme = spec.scheme ?? ex.listener.protocol;
  const host = spec.host ?? ex.host;
  const defaultPort = scheme === 'https' ? 443 : 80;
  const port = spec.port === undefined || spec.port === defaultPort ? '' : `:${spec.port}`;
  const path = spec.path ?? ex.path;
  const location = `${scheme}://${host}${port}${path}${ex.query === '' ? '' : `?${ex.query}`}`;
  (ex.res as ServerResponse).writeHead(spec.status, { location, 'content-length': 0, 'cache-control': 'no-store' });
  ex.res.end();
}
