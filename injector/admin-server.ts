/**
 * The injector's plaintext admin port: `/healthz` (the process runs), `/ready` (it serves a certificate
 * and the webhook configuration trusts it), `/metrics` (Prometheus). Same limits as every listener:
 * small headers, short timeouts, few connections; only GET.
 */
import { listenServer } from '../common/server-listen.js';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { createAdminHttpServer, textReply, type AdminReply } from '../common/admin-http.js';

export interface AdminServerOptions {
  readonly registry: Registry;
  /** null when ready, otherwise why not. */
  readonly notReadyReason: () => string | null;
}

export class AdminServer {
  private readonly server: Server;

  constructor(private readonly options: AdminServerOptions) {
    const text = (status: number, body: string): AdminReply => textReply(status, body, 'text/plain; charset=utf-8');
    this.server = createAdminHttpServer({
      routes: {
        '/healthz': () => text(200, 'ok\n'),
        '/ready': () => {
          const reason = this.options.notReadyReason();
          return reason === null ? text(200, 'ready\n') : text(503, `not ready: ${reason}\n`);
        },
        '/metrics': () =>
          this.options.registry.metrics().then(
            (metrics) => textReply(200, metrics, this.options.registry.contentType),
            () => text(500, 'metrics unavailable\n'),
          ),
      },
      methods: ['GET'],
      methodNotAllowed: text(405, 'GET only\n'),
      notFound: () => text(404, 'not found: try /healthz, /ready, /metrics\n'),
      limits: { keepAliveTimeoutMs: 30_000 },
    });
  }

  listen(port: number, host = '0.0.0.0'): Promise<AddressInfo> {
    return listenServer(this.server, port, host);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
