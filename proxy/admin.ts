/**
 * The admin port of a sidecar: `/healthz` (the process runs), `/ready` (it can carry traffic: listening,
 * with a valid identity and a config), `/metrics` (Prometheus text), `/config` (the effective config, no
 * keys) and `/certs` (SPIFFE ID, chain, expiry). Bind it to loopback: it discloses topology.
 *
 * It has its own limits, like every listener: small header budget, short timeouts, a connection cap,
 * GET/HEAD only (the shared admin server, common/admin-http.ts).
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { createAdminHttpServer, DEFAULT_ADMIN_HTTP_LIMITS, jsonReply, textReply } from '../common/admin-http.js';
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

export const DEFAULT_ADMIN_LIMITS: AdminLimits = DEFAULT_ADMIN_HTTP_LIMITS;

export class AdminServer {
  private readonly server: Server;

  constructor(
    private readonly source: AdminSource,
    private readonly logger: Logger,
    limits: AdminLimits = DEFAULT_ADMIN_LIMITS,
  ) {
    this.server = createAdminHttpServer({
      routes: {
        '/healthz': () => textReply(200, 'ok\n'),
        '/ready': () => {
          const r = this.source.readiness();
          return textReply(r.ready ? 200 : 503, r.ready ? 'ready\n' : `not ready: ${r.reasons.join('; ')}\n`);
        },
        '/metrics': async () => textReply(200, await this.source.registry.metrics(), this.source.registry.contentType),
        '/config': () => jsonReply(200, this.source.effectiveConfig()),
        '/certs': () => jsonReply(200, this.source.certificates()),
      },
      methodNotAllowed: textReply(405, 'only GET and HEAD\n'),
      notFound: () => textReply(404, 'not found: try /healthz /ready /metrics /config /certs\n'),
      onError: (err) => {
        this.logger.error({ err: (err as Error).message }, 'admin request failed');
        return textReply(500, 'internal error\n');
      },
      limits: { ...limits, headersTimeoutMs: Math.min(limits.requestTimeoutMs, 5_000), keepAliveTimeoutMs: 5_000 },
    });
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
}
