/**
 * The agent's admin port (loopback by default): `/healthz`, `/ready` (JSON with the detail an operator
 * needs: control plane reachable or not, config version and whether it is stale, certificate expiry,
 * upstreams still waiting), `/metrics` (the agent's and the sidecar's), `/config`, `/certs`.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

export interface AgentAdminSource {
  readonly registry: Registry;
  status(): { readonly ready: boolean } & Record<string, unknown>;
  config(): unknown;
  certificates(): unknown;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

export function createAgentAdminServer(source: AgentAdminSource): Server {
  const server = createServer({ maxHeaderSize: 8 * 1024, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 }, (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', 'only GET and HEAD\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/ready': {
        const status = source.status();
        send(res, status.ready ? 200 : 503, 'application/json', json(status));
        return;
      }
      case '/metrics':
        source.registry.metrics().then(
          (text) => send(res, 200, source.registry.contentType, text),
          () => send(res, 500, 'text/plain', 'metrics unavailable\n'),
        );
        return;
      case '/config':
        send(res, 200, 'application/json', json(source.config()));
        return;
      case '/certs':
        send(res, 200, 'application/json', json(source.certificates()));
        return;
      default:
        send(res, 404, 'text/plain', 'not found: try /healthz /ready /metrics /config /certs\n');
    }
  });
  server.maxConnections = 64;
  return server;
}
