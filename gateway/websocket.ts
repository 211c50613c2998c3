/**
 * WebSocket from HTTP/1.1 clients. An `Upgrade: websocket` request is routed and checked like any other
 * (host, path, route, CORS, JWT, rate limit: the answer to a refused one is written on the raw socket by
 * a ServerResponse bound to it), then its head is re-serialised with the rebuilt headers and written to
 * the destination's sidecar listener, which carries upgrades through the mesh (the app port must list
 * `websocket`, the default). From the sidecar's 101 on, bytes are spliced both ways; either side closing
 * or failing ends both. Only `websocket` is accepted from clients (h2c and anything else: 400).
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { forwardedRequestHeaders } from './client-headers.js';
import type { DestinationPorts } from './forwarder.js';
import { upstreamPath } from './forwarder.js';
import type { DestinationSpec } from './config-types.js';
import type { Exchange } from './request-handler.js';
import type { CompiledRoute } from './route-table.js';

/** Whether a request asks for a WebSocket upgrade (the only protocol the gateway carries). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket';
}

/** A response object writing on an upgrade request's raw socket, so refusals look like any other. */
export function responseOnSocket(req: IncomingMessage, socket: Socket): ServerResponse {
  const res = new ServerResponse(req);
  res.assignSocket(socket);
  res.shouldKeepAlive = false;
  res.on('finish', () => socket.end());
  return res;
}

function headText(method: string, path: string, headers: Record<string, string | string[] | number | undefined>): string {
  let text = `${method} ${path} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${String(v)}\r\n`;
  }
  return `${text}\r\n`;
}

/** Splices the client's socket to the sidecar listener for `route`; `done` gets 101 or the failure status. */
export function forwardUpgrade(route: CompiledRoute, ex: Exchange, socket: Socket, head: Buffer, ports: DestinationPorts, done: (status: number) => void): void {
  const spec = route.spec;
  const port = ports(spec.destination as DestinationSpec);
  const headers = port === undefined ? undefined : forwardedRequestHeaders(ex.req.headers, { view: ex.view, host: ex.host, proto: ex.listener.protocol, alsoDrop: new Set(Object.keys(ex.setHeaders)) });
  if (port === undefined || headers === undefined || 'refused' in headers) {
    socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    done(503);
    return;
  }
  for (const [name, value] of Object.entries(spec.requestHeaders?.set ?? {})) headers[name] = value;
  for (const name of spec.requestHeaders?.remove ?? []) delete headers[name];
  Object.assign(headers, ex.setHeaders, { connection: 'upgrade', upgrade: 'websocket' });
  const upstream = connect(port, '127.0.0.1');
  let finished = false;
  const close = (): void => {
    upstream.destroy();
    socket.destroy();
    if (!finished) {
      finished = true;
      done(502);
    }
  };
  upstream.once('connect', () => {
    upstream.write(headText(ex.req.method ?? 'GET', upstreamPath(spec, ex.path, ex.query), headers));
    if (head.length > 0) upstream.write(head);
    socket.pipe(upstream);
    // The sidecar's answer (101, or a refusal such as 403) is passed on as it is; its status is counted.
    upstream.once('data', (first: Buffer) => {
      finished = true;
      done(Number(/^HTTP\/1\.[01] (\d{3})/.exec(first.subarray(0, 16).toString('latin1'))?.[1] ?? 502));
      socket.write(first);
      upstream.pipe(socket);
    });
  });
  upstream.on('error', close);
  socket.on('error', close);
  upstream.on('close', () => socket.destroy());
  socket.on('close', () => upstream.destroy());
}
