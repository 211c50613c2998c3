/**
 * The admin port of a sidecar: `/healthz` (the process runs), `/ready` (it can carry traffic: listening,
 * with a valid identity and a config), `/metrics` (Prometheus text), `/config` (the effective config, no
 * keys) and `/certs` (SPIFFE ID, chain, expiry). Bind it to loopback: it discloses topology.
 *
 * It has its own limits, like every listener: small header budget, short timeouts, a connection cap,
 * GET/HEAD only.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { TrellisError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';

export interface AdminSource {
  readonly registry: Registry;
  readiness(): { readonly ready: boolean; readonly reasons: readonly string[] };
  effectiveConfig(): unknown;
  certificates(): unknown;
}

export interface AdminLimits {
  readonly maxConnections: number;
  readonly maxHeaderBytes: number;
  readonly requestTimeoutMs: number;
}

export const DEFAULT_ADMIN_LIMITS: AdminLimits = Object.freeze({ maxConnections: 64, maxHeaderBytes: 8 * 1024, requestTimeoutMs: 10_000 });

export class AdminServer {
  private readonly server: Server;

  constructor(
    private readonly source: AdminSource,
    private readonly logger: Logger,
    limits: AdminLimits = DEFAULT_ADMIN_LIMITS,
  ) {
    this.server = createServer(
      { maxHeaderSize: limits.maxHeaderBytes, requestTimeout: limits.requestTimeoutMs, headersTimeout: Math.min(limits.requestTimeoutMs, 5_000), keepAliveTimeout: 5_000 },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          this.logger.error({ err: (err as Error).message }, 'admin request failed');
          if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
          else res.destroy();
        });
      },
    );
    this.server.maxConnections = limits.maxConnections;
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new TrellisError(CODE.ADMIN_LISTEN_FAILED, `cannot listen on ${host}:${port} for the admin port: ${err.message}`, { side: 'input', cause: err }));
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | undefined {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? a : undefined;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'text/plain', 'only GET and HEAD\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/ready': {
        const r = this.source.readiness();
        send(res, r.ready ? 200 : 503, 'text/plain', r.ready ? 'ready\n' : `not ready: ${r.reasons.join('; ')}\n`);
        return;
      }
      case '/metrics':
        send(res, 200, this.source.registry.contentType, await this.source.registry.metrics());
        return;
      case '/config':
        send(res, 200, 'application/json', `${JSON.stringify(this.source.effectiveConfig(), null, 2)}\n`);
        return;
      case '/certs':
        send(res, 200, 'application/json', `${JSON.stringify(this.source.certificates(), null, 2)}\n`);
        return;
      default:
        send(res, 404, 'text/plain', 'not found: try /healthz /ready /metrics /config /certs\n');
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
