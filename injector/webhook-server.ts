/**
 * The HTTPS listener the API server calls. Routes:
 *   POST /inject          pods in namespaces labelled trellis.dev/injection=enabled (namespaceSelector)
 *   POST /inject/opt-in   pods labelled trellis.dev/inject=true in other namespaces (objectSelector)
 *   GET  /healthz         liveness, for the kubelet
 *
 * Limits, because a webhook with `failurePolicy: Fail` that hangs blocks every pod in the mesh: headers at
 * most 16 KiB, bodies at most 4 MiB (a pod is at most ~1.5 MiB in etcd), a TLS handshake within 10 s, a
 * whole request within 10 s (the API server gives up at the webhook's timeoutSeconds, at most 10 s), idle
 * keep-alive connections closed after 60 s, and at most 512 connections at once. The certificate is
 * swapped in place with `setSecureContext`: open connections keep their session, new ones get the new one.
 */
import { listenServer } from '../common/server-listen.js';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError, isTrellisError } from '../common/errors.js';
import { handleAdmissionReview, type AdmissionHandlerDeps } from './admission-handler.js';
import type { AdmissionResult } from './metrics.js';
import type { SelectionRoute } from './selection.js';
import type { ServingMaterial } from './serving-certificate-issuer.js';
import { CODE } from '../common/error-codes.js';
import { withOverrides } from '../common/limit-schema.js';
import { INJECTOR_LIMITS } from './limits.js';

export interface WebhookLimits {
  readonly maxBodyBytes: number;
  readonly maxHeaderBytes: number;
  readonly requestTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxConnections: number;
}

export const DEFAULT_WEBHOOK_LIMITS: WebhookLimits = Object.freeze({
  maxBodyBytes: INJECTOR_LIMITS.webhookMaxBodyBytes,
  maxHeaderBytes: INJECTOR_LIMITS.webhookMaxHeaderBytes,
  requestTimeoutMs: INJECTOR_LIMITS.webhookRequestTimeoutMs,
  handshakeTimeoutMs: INJECTOR_LIMITS.webhookHandshakeTimeoutMs,
  keepAliveTimeoutMs: INJECTOR_LIMITS.webhookKeepAliveTimeoutMs,
  maxConnections: INJECTOR_LIMITS.webhookMaxConnections,
});

export const WEBHOOK_PATHS: Readonly<Record<string, SelectionRoute>> = Object.freeze({ '/inject': 'namespace', '/inject/opt-in': 'opt-in' });

export interface WebhookServerOptions extends AdmissionHandlerDeps {
  readonly material: ServingMaterial;
  readonly limits?: Partial<WebhookLimits>;
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit) {
      reject(new HttpFailure(413, `request body larger than ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        reject(new HttpFailure(413, `request body larger than ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const mediaType = contentType.split(';')[0]?.trim().toLowerCase();
  return mediaType === 'application/json';
}

function send(res: ServerResponse, status: number, body: string, contentType = 'application/json'): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

function sendError(res: ServerResponse, status: number, message: string): void {
  send(res, status, JSON.stringify({ error: { code: status, message } }));
}

export class WebhookServer {
  private readonly server: Server;
  private readonly limits: WebhookLimits;

  constructor(private readonly options: WebhookServerOptions) {
    this.limits = withOverrides(DEFAULT_WEBHOOK_LIMITS, options.limits);
    this.server = createServer(
      {
        cert: options.material.certChainPem,
        key: options.material.keyPem,
        minVersion: 'TLSv1.2',
        maxHeaderSize: this.limits.maxHeaderBytes,
        handshakeTimeout: this.limits.handshakeTimeoutMs,
        requestTimeout: this.limits.requestTimeoutMs,
        headersTimeout: Math.min(this.limits.requestTimeoutMs, 10_000),
        keepAliveTimeout: this.limits.keepAliveTimeoutMs,
      },
      (req, res) => this.onRequest(req, res),
    );
    this.server.maxConnections = this.limits.maxConnections;
    this.server.on('tlsClientError', (err) => options.logger.debug({ err: describeError(err) }, 'TLS handshake failed'));
    this.options.metrics.certificateExpiry.set(options.material.notAfter.getTime() / 1000);
  }

  /** Binds and resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host = '0.0.0.0'): Promise<AddressInfo> {
    return listenServer(this.server, port, host);
  }

  /** Swaps the serving certificate for new connections, without a restart. */
  updateCertificate(material: ServingMaterial): void {
    this.server.setSecureContext({ cert: material.certChainPem, key: material.keyPem, minVersion: 'TLSv1.2' });
    this.options.metrics.certificateExpiry.set(material.notAfter.getTime() / 1000);
    this.options.logger.info({ notAfter: material.notAfter.toISOString() }, 'serving certificate reloaded');
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  /** Ends open connections too (tests, and after the shutdown grace period). */
  closeAllConnections(): void {
    this.server.closeAllConnections();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/healthz' && req.method === 'GET') {
      send(res, 200, 'ok\n', 'text/plain');
      return;
    }
    const route = WEBHOOK_PATHS[path];
    if (route === undefined) {
      sendError(res, 404, `no such path ${path}; the webhook serves POST /inject and POST /inject/opt-in`);
      return;
    }
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      sendError(res, 405, 'the webhook accepts POST only');
      return;
    }
    if (!isJson(req.headers['content-type'])) {
      sendError(res, 415, `content-type must be application/json, got ${JSON.stringify(req.headers['content-type'] ?? '')}`);
      req.resume();
      return;
    }
    void this.review(req, res, route);
  }

  private async review(req: IncomingMessage, res: ServerResponse, route: SelectionRoute): Promise<void> {
    let result: AdmissionResult = 'error';
    let started = 0n;
    try {
      const body = await readBody(req, this.limits.maxBodyBytes);
      started = process.hrtime.bigint();
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        throw new HttpFailure(400, 'the body is not valid JSON');
      }
      const handled = await handleAdmissionReview(parsed, route, this.options);
      result = handled.result;
      send(res, 200, JSON.stringify(handled.review));
    } catch (err) {
      if (err instanceof HttpFailure) {
        result = 'malformed';
        sendError(res, err.status, err.message);
        if (err.status === 413) res.once('finish', () => req.socket.destroy());
      } else if (isTrellisError(err) && err.code === CODE.INJECTOR_REVIEW_MALFORMED) {
        result = 'malformed';
        sendError(res, 400, err.message);
      } else {
        this.options.logger.error({ err: describeError(err) }, 'admission request failed');
        sendError(res, 500, 'internal error in the Trellis injector');
      }
    } finally {
      this.options.metrics.admissions.inc({ result });
      if (started !== 0n) this.options.metrics.duration.observe({ result }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }
}
