/**
 * The injector's plaintext admin port: `/healthz` (the process runs), `/ready` (it serves a certificate
 * and the webhook configuration trusts it), `/metrics` (Prometheus). Same limits as every listener:
 * small headers, short timeouts, few connections; only GET.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AdminServerOptions {
  readonly registry: Registry;
  /** null when ready, otherwise why not. */
  readonly notReadyReason: () => string | null;
}

export class AdminServer {
  private readonly server: Server;

  constructor(private readonly options: AdminServerOptions) {
    this.server = createServer({ maxHeaderSize: 8 * 1024, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 30_000 }, (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const reply = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (req.method !== 'GET') return reply(405, 'GET only\n');
      if (path === '/healthz') return reply(200, 'ok\n');
      if (path === '/ready') {
        const reason = this.options.notReadyReason();
        return reason === null ? reply(200, 'ready\n') : reply(503, `not ready: ${reason}\n`);
      }
      if (path === '/metrics') {
        this.options.registry.metrics().then(
          (text) => reply(200, text, this.options.registry.contentType),
          () => reply(500, 'metrics unavailable\n'),
        );
        return;
      }
      reply(404, 'not found: try /healthz, /ready, /metrics\n');
    });
    this.server.maxConnections = 64;
  }

  listen(port: number, host = '0.0.0.0'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
