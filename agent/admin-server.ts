/**
 * The agent's admin port (loopback by default): `/healthz`, `/ready` (JSON with the detail an operator
 * needs: control plane reachable or not, config version and whether it is stale, certificate expiry,
 * upstreams still waiting), `/metrics` (the agent's and the sidecar's), `/config`, `/certs`.
 */
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { createAdminHttpServer, jsonReply, textReply } from '../common/admin-http.js';

export interface AgentAdminSource {
  readonly registry: Registry;
  status(): { readonly ready: boolean } & Record<string, unknown>;
  config(): unknown;
  certificates(): unknown;
}

export function createAgentAdminServer(source: AgentAdminSource): Server {
  return createAdminHttpServer({
    routes: {
      '/healthz': () => textReply(200, 'ok\n'),
      '/ready': () => {
        const status = source.status();
        return jsonReply(status.ready ? 200 : 503, status);
      },
      '/metrics': () =>
        source.registry.metrics().then(
          (text) => textReply(200, text, source.registry.contentType),
          () => textReply(500, 'metrics unavailable\n'),
        ),
      '/config': () => jsonReply(200, source.config()),
      '/certs': () => jsonReply(200, source.certificates()),
    },
    methodNotAllowed: textReply(405, 'only GET and HEAD\n'),
    notFound: () => textReply(404, 'not found: try /healthz /ready /metrics /config /certs\n'),
  });
}
