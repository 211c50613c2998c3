/**
 * Forwarding into the mesh through the gateway's own sidecar. The gateway runs the agent in-process; the
 * agent's sidecar has one loopback listener per destination (port chosen by the kernel), and a request is
 * sent there over a kept-alive HTTP/1.1 connection. From that listener on it is the sidecar's outbound
 * path unchanged (proxy/outbound/http/): per-request balancing, the destination's TrafficRoute weights,
 * retries, timeouts, outlier detection and circuit breaker, HTTP lanes on pooled mTLS sessions, and the
 * destination's inbound policy judging the gateway's SPIFFE identity. So nothing the gateway forwards
 * bypasses what a sidecar enforces, at the cost of one loopback hop (the benchmark measures it).
 *
 * Bodies are piped both ways (backpressure end to end) and counted against the route's size limit.
 * gRPC calls from HTTP/2 clients go over h2c to the same listener instead (grpc-forwarder.ts): their
 * status is in trailers, which an HTTP/1.1 hop would lose.
 */
import { Agent, request, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Logger } from '../common/log.js';
import { forwardedRequestHeaders, forwardedResponseHeaders } from './client-headers.js';
import type { DestinationSpec, RouteSpec } from './config-types.js';
import { gatewayFailure, respondFailure } from './failure.js';
import type { Exchange, Forward } from './request-handler.js';
import type { CompiledRoute } from './route-table.js';
import { GrpcForwarder, isGrpcRequest } from './grpc-forwarder.js';
import { forwardUpgrade } from './websocket.js';
import type { Socket } from 'node:net';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

/** Where the sidecar listens for a destination, or undefined while the service is unknown (no instance yet). */
export type DestinationPorts = (dest: DestinationSpec) => number | undefined;

export interface ForwarderDeps {
  readonly ports: DestinationPorts;
  readonly maxBodyBytes: () => number;
  readonly log: Logger;
}

export function destinationName(d: DestinationSpec): string {
  return `${d.namespace}/${d.service}${d.port === undefined ? '' : `:${d.port}`}`;
}

/** The path sent to the mesh: the normalised path, rewritten as the route says, with the query unchanged. */
export function upstreamPath(spec: RouteSpec, path: string, query: string): string {
  let out = path;
  const rewrite = spec.rewrite;
  if (rewrite !== undefined && 'path' in rewrite) out = rewrite.path;
  else if (rewrite !== undefined && spec.match?.path !== undefined && 'prefix' in spec.match.path) {
    const rest = path.slice(spec.match.path.prefix.length);
    const base = rewrite.prefix.endsWith('/') && rest.startsWith('/') ? rewrite.prefix.slice(0, -1) : rewrite.prefix;
    out = `${base}${rest}` || '/';
    if (!out.startsWith('/')) out = `/${out}`;
  }
  return query === '' ? out : `${out}?${query}`;
}

function applyEdits(headers: OutgoingHttpHeaders, spec: RouteSpec, set: Record<string, string>): void {
  for (const name of spec.requestHeaders?.remove ?? []) delete headers[name];
  for (const [name, value] of Object.entries(spec.requestHeaders?.set ?? {})) headers[name] = value;
  for (const [name, value] of Object.entries(set)) headers[name] = value;
}

export class MeshForwarder implements Forward {
  // Loopback connections to the sidecar, kept alive: one TCP handshake per connection, not per request.
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 256, keepAliveMsecs: 30_000 });

  private readonly grpc: GrpcForwarder;

  constructor(private readonly deps: ForwarderDeps) {
    this.grpc = new GrpcForwarder(deps.log);
  }

  forward(route: CompiledRoute, ex: Exchange, done: (status: number, upstream: string) => void): void {
    const spec = route.spec;
    const dest = spec.destination as DestinationSpec;
    const upstream = destinationName(dest);
    const { req, res, correlationId } = ex;
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const end = (status: number): void => {
      if (finished) return;
      finished = true;
      if (timer !== undefined) clearTimeout(timer);
      done(status, upstream);
    };
    const fail = (key: Parameters<typeof gatewayFailure>[0], detail?: string): void => {
      const failure = gatewayFailure(key, detail);
      if (finished) return;
      respondFailure(res, failure, correlationId);
      end(failure.status);
    };
    const limit = spec.maxBodyBytes ?? this.deps.maxBodyBytes();
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit && 'shouldKeepAlive' in res) res.shouldKeepAlive = false;
    if (declared > limit) return fail('GATEWAY_BODY_TOO_LARGE', `${declared} bytes declared, the limit is ${limit}`);
    const port = this.deps.ports(dest);
    if (port === undefined) return fail('GATEWAY_DESTINATION_UNAVAILABLE', upstream);
    const alsoDrop = new Set(Object.keys(ex.setHeaders));
    const headers = forwardedRequestHeaders(req.headers, { view: ex.view, host: ex.host, proto: ex.listener.protocol, alsoDrop });
    if ('refused' in headers) return fail('GATEWAY_BAD_REQUEST', `Connection names ${headers.refused}`);
    applyEdits(headers, spec, ex.setHeaders);
    if (isGrpcRequest(req)) {
      // A call's messages count against the same limit; past it the call is reset (its answer may have started).
      let sent = 0;
      req.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        if (sent > limit && !finished) {
          res.destroy();
          end(413);
        }
      });
      this.grpc.forward(port, ex.host, upstreamPath(spec, ex.path, ex.query), headers, req as Http2ServerRequest, res as Http2ServerResponse, end);
      return;
    }
    const up = request({ host: '127.0.0.1', port, method: req.method, path: upstreamPath(spec, ex.path, ex.query), headers, agent: this.agent, setHost: false });
    if (spec.timeoutMs !== undefined) timer = setTimeout(() => {
      up.destroy();
      if (!res.headersSent) return fail('GATEWAY_TIMEOUT', `${spec.timeoutMs} ms`);
      res.destroy();
      end(504);
    }, spec.timeoutMs);
    up.on('response', (answer: IncomingMessage) => {
      (res as ServerResponse).writeHead(answer.statusCode ?? 502, forwardedResponseHeaders(answer.headers));
      answer.pipe(res as ServerResponse);
      answer.on('end', () => end(answer.statusCode ?? 502));
      answer.on('error', () => res.destroy());
    });
    up.on('error', (err) => {
      if (finished) return;
      this.deps.log.debug({ err: err.message, upstream, correlationId }, 'forward to the sidecar failed');
      if (!res.headersSent) return fail('GATEWAY_UPSTREAM_FAILED', upstream);
      res.destroy();
      end(502);
    });
    // The client went away before the answer ended: stop the mesh side too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received <= limit) return;
      req.unpipe(up);
      up.destroy();
      // The rest of the body is not read: the connection cannot carry another request after this answer.
      if ('shouldKeepAlive' in res) res.shouldKeepAlive = false;
      if (!res.headersSent) fail('GATEWAY_BODY_TOO_LARGE', `more than ${limit} bytes`);
      else res.destroy();
      end(413);
    });
    req.pipe(up);
  }

  upgrade(route: CompiledRoute, ex: Exchange, socket: Socket, head: Buffer, done: (status: number, upstream: string) => void): void {
    const upstream = destinationName(route.spec.destination as DestinationSpec);
    forwardUpgrade(route, ex, socket, head, this.deps.ports, (status) => done(status, upstream));
  }

  close(): void {
    this.grpc.close();
    this.agent.destroy();
  }
}
