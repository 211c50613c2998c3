/**
 * The control plane's admin listener (plain HTTP, loopback by default): `/healthz`, `/ready` (with the
 * policy state: a rejected change shows here while the last good policy stays in force), `/metrics`,
 * `/registry` (every registered instance as JSON) and `/policy`.
 */
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { createAdminHttpServer, jsonReply, textReply, type AdminRoute } from '../common/admin-http.js';
import type { PolicyState } from './policy-source.js';
import type { RegistryEntryView } from './registry.js';

export interface AdminSources {
  readonly metrics: Registry;
  readonly ready: () => boolean;
  readonly status: () => Record<string, unknown>;
  readonly registry: () => readonly RegistryEntryView[];
  readonly policy: () => PolicyState;
  /** Routes that build their own reply (the UI's JSON, which reads the query string). */
  readonly routes?: Readonly<Record<string, AdminRoute>>;
  /** More JSON routes (a zone of a multi-zone mesh adds `/global` and `/global/catalogue`). */
  readonly extra?: Readonly<Record<string, () => unknown>>;
}

export function createAdminServer(sources: AdminSources): Server {
  return createAdminHttpServer({
    routes: {
      ...sources.routes,
      ...Object.fromEntries(Object.entries(sources.extra ?? {}).map(([path, read]) => [path, () => jsonReply(200, read())])),
      '/healthz': () => jsonReply(200, { status: 'ok' }),
      '/ready': () => {
        const ready = sources.ready();
        return jsonReply(ready ? 200 : 503, { ready, ...sources.status() });
      },
      '/metrics': () =>
        sources.metrics.metrics().then(
          (text) => textReply(200, text, sources.metrics.contentType),
          () => jsonReply(500, { error: 'metrics unavailable' }),
        ),
      '/registry': () => jsonReply(200, { endpoints: sources.registry() }),
      '/policy': () => {
        const state = sources.policy();
        return jsonReply(200, { revision: state.revision, loadedAt: state.loadedAt, error: state.error, policies: state.policies });
      },
    },
    methodNotAllowed: jsonReply(405, { error: 'only GET' }),
    notFound: (path) => jsonReply(404, { error: `no ${path}; try /healthz, /ready, /metrics, /registry, /policy, /ui/` }),
    limits: { maxConnections: 256 },
  });
}
