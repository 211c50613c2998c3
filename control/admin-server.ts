/**
 * The control plane's admin listener (plain HTTP, loopback by default): `/healthz`, `/ready` (with the
 * policy state: a rejected change shows here while the last good policy stays in force), `/metrics`,
 * `/registry` (every registered instance as JSON) and `/policy`.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { PolicyState } from './policy-source.js';
import type { RegistryEntryView } from './registry.js';

export interface AdminSources {
  readonly metrics: Registry;
  readonly ready: () => boolean;
  readonly status: () => Record<string, unknown>;
  readonly registry: () => readonly RegistryEntryView[];
  readonly policy: () => PolicyState;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export function createAdminServer(sources: AdminSources): Server {
  const server = createServer({ maxHeaderSize: 8 * 1024, requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: 'only GET' });
      return;
    }
    switch (path) {
      case '/healthz':
        json(res, 200, { status: 'ok' });
        return;
      case '/ready': {
        const ready = sources.ready();
        json(res, ready ? 200 : 503, { ready, ...sources.status() });
        return;
      }
      case '/metrics':
        sources.metrics.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': sources.metrics.contentType });
            res.end(text);
          },
          () => json(res, 500, { error: 'metrics unavailable' }),
        );
        return;
      case '/registry':
        json(res, 200, { endpoints: sources.registry() });
        return;
      case '/policy': {
        const state = sources.policy();
        json(res, 200, { revision: state.revision, loadedAt: state.loadedAt, error: state.error, policies: state.policies });
        return;
      }
      default:
        json(res, 404, { error: `no ${path}; try /healthz, /ready, /metrics, /registry, /policy` });
    }
  });
  server.maxConnections = 256;
  return server;
}
