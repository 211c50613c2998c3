/**
 * The global control plane's listener: HTTP/2 over TLS 1.3, the only way in for zones.
 *
 *   POST /v1/zone/bootstrap   Authorization: Bearer <zone token>; {zone, csrPem} → the zone's certificate
 *   POST /v1/zone/renew       mutual TLS with the zone certificate; {csrPem} → a new one
 *   POST /v1/zone/sync        mutual TLS with the zone certificate; the sync stream (sync-session.ts)
 *   POST /v1/zone/golden      mutual TLS with the zone certificate; the zone's golden-metrics edge view (zone-golden.ts)
 *
 * Client certificates are asked for but not required at the handshake (bootstrap has none yet); the
 * paths that need one check it themselves: chained to the mesh bundle (node:tls), a zone identity, and
 * issued through a zone token that is not revoked. Bodies are bounded, sessions and streams too.
 */
import { createSecureServer, constants as h2, type Http2SecureServer, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { MAX_CSR_PEM_BYTES } from '../../ca/csr.js';
import type { CertificateAuthority } from '../../ca/authority.js';
import { TrellisError, describeError, isTrellisError } from '../../common/errors.js';
import { CODE, httpStatusOf } from '../../common/error-codes.js';
import type { Logger } from '../../common/log.js';
import { ZONE_NAME, ZONE_SYNC_PATHS, malformed } from '../zone-sync/protocol.js';
import { zoneIdentity, zoneOfCertificate } from './zone-identity.js';
import type { ZoneTokenService } from './zone-tokens.js';
import { ZONE_GOLDEN_LIMITS } from '../zone-sync/golden-limits.js';

export interface GlobalServerOptions {
  readonly trustDomain: string;
  readonly rootNamespace: string;
  /** Signs zone certificates. */
  readonly ca: CertificateAuthority;
  /** The mesh root, when this global holds its key and it may sign CAs: it issues each zone's intermediate. */
  readonly root: CertificateAuthority | undefined;
  readonly zoneCertTtlMs: number;
  readonly tokens: ZoneTokenService;
  readonly tls: () => { keyPem: string; certChainPem: string; trustBundlePem: string };
  readonly log: Logger;
  /** Whether a zone is connected now: a bootstrap for its name is refused meanwhile (a duplicate). */
  readonly connected: (zone: string) => boolean;
  readonly openSync: (stream: ServerHttp2Stream, zone: string) => void;
  readonly maxSessions: number;
  /** A zone's golden-metrics edge view (zone-golden.ts); throws to refuse it. */
  readonly golden: (zone: string, body: Record<string, unknown>) => void;
}

export const MAX_BOOTSTRAP_BODY_BYTES = 64 * 1024;

export interface ZoneCertificate {
  readonly certChainPem: string;
  readonly trustBundlePem: string;
  readonly serial: string;
  readonly notAfter: string;
  /** The zone's intermediate under the mesh root (first join, when asked for and the global can issue it). */
  readonly zoneCa?: { readonly certChainPem: string; readonly keyPem: string; readonly bundlePem: string };
}

function readBody(stream: ServerHttp2Stream, limit = MAX_BOOTSTRAP_BODY_BYTES): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limit) {
        // Answered here, then the rest of the body refused (RST_STREAM NO_ERROR after a complete response):
        // responding after the close threw outside any handler and took the process down.
        const err = new TrellisError(CODE.CONTROL_BODY_TOO_LARGE, `the request body is over ${limit} bytes`, { side: 'downstream' });
        stream.removeAllListeners('data');
        replyError(stream, err);
        stream.close(h2.NGHTTP2_NO_ERROR);
        reject(err);
        return;
      }
      chunks.push(chunk);
    });
    stream.on('end', () => {
      try {
        const value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
        if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
        resolve(value as Record<string, unknown>);
      } catch {
        reject(new TrellisError(CODE.CONTROL_BAD_REQUEST, 'the request body must be a JSON object', { side: 'downstream' }));
      }
    });
    stream.on('error', reject);
  });
}

function reply(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ':status': status, 'content-type': 'application/json', 'cache-control': 'no-store' });
  stream.end(JSON.stringify(body));
}

function replyError(stream: ServerHttp2Stream, err: unknown): void {
  const code = isTrellisError(err) ? err.code : CODE.CONTROL_INTERNAL;
  reply(stream, httpStatusOf(err), { error: { code, message: isTrellisError(err) ? err.message : 'internal error (see the global control plane log)' } });
}

export function createGlobalServer(options: GlobalServerOptions): Http2SecureServer {
  const tls = options.tls();
  const server = createSecureServer({
    key: tls.keyPem,
    cert: tls.certChainPem,
    ca: tls.trustBundlePem,
    minVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: false,
    allowHTTP1: false,
    settings: { maxConcurrentStreams: 16 },
    maxSessionMemory: 64,
  });
  server.setTimeout(0);
  server.on('stream', (stream, headers) => {
    void route(options, stream, headers).catch((err: unknown) => {
      if (httpStatusOf(err) >= 500) options.log.error({ err: describeError(err), path: headers[':path'] }, 'global control plane request failed');
      else options.log.info({ err: describeError(err), path: headers[':path'] }, 'global control plane request refused');
      replyError(stream, err);
    });
  });
  server.on('sessionError', (err) => options.log.debug({ err: err.message }, 'HTTP/2 session error'));
  server.on('tlsClientError', (err) => options.log.debug({ err: err.message }, 'TLS handshake with a zone failed'));
  server.maxConnections = options.maxSessions;
  return server;
}

async function certifiedZone(options: GlobalServerOptions, stream: ServerHttp2Stream): Promise<{ zone: string; serial: string }> {
  const socket = stream.session?.socket as TLSSocket | undefined;
  const cert = socket?.getPeerX509Certificate?.();
  if (socket === undefined || cert === undefined) throw new TrellisError(CODE.CONTROL_CLIENT_CERT_REQUIRED, 'this path needs the zone certificate (mutual TLS)', { side: 'downstream' });
  if (!socket.authorized) throw new TrellisError(CODE.CONTROL_CLIENT_CERT_UNTRUSTED, `client certificate refused: ${String(socket.authorizationError ?? 'not issued by this mesh')}`, { side: 'downstream' });
  const peer = zoneOfCertificate(cert, options.trustDomain, options.rootNamespace);
  await options.tokens.check(peer.serial);
  return peer;
}

async function sign(options: GlobalServerOptions, zone: string, csrPem: unknown): Promise<ZoneCertificate> {
  if (typeof csrPem !== 'string' || csrPem.length === 0 || csrPem.length > MAX_CSR_PEM_BYTES) throw new TrellisError(CODE.CSR_MISSING, 'the request needs "csrPem": a PEM certificate signing request', { side: 'downstream' });
  const signed = await options.ca.signCsr(csrPem, zoneIdentity(options.trustDomain, options.rootNamespace, zone), { ttlMs: options.zoneCertTtlMs });
  return { certChainPem: signed.certChainPem, trustBundlePem: options.tls().trustBundlePem, serial: signed.serial, notAfter: signed.notAfter.toISOString() };
}

async function route(options: GlobalServerOptions, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
  const path = headers[':path'];
  if (headers[':method'] !== 'POST') throw new TrellisError(CODE.CONTROL_METHOD_NOT_ALLOWED, 'only POST', { side: 'downstream' });
  if (path === ZONE_SYNC_PATHS.sync) {
    const { zone } = await certifiedZone(options, stream);
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
    options.openSync(stream, zone);
    return;
  }
  if (path === ZONE_SYNC_PATHS.golden) {
    const { zone } = await certifiedZone(options, stream);
    options.golden(zone, await readBody(stream, ZONE_GOLDEN_LIMITS.maxBodyBytes));
    reply(stream, 200, { accepted: true });
    return;
  }
  if (path === ZONE_SYNC_PATHS.renew) {
    const { zone, serial } = await certifiedZone(options, stream);
    const body = await readBody(stream);
    reply(stream, 200, await options.tokens.renew(serial, () => sign(options, zone, body.csrPem)));
    return;
  }
  if (path === ZONE_SYNC_PATHS.bootstrap) {
    const auth = headers.authorization;
    const bearer = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
    if (bearer === undefined) throw new TrellisError(CODE.CONTROL_CREDENTIAL_REQUIRED, 'bootstrap needs "Authorization: Bearer <zone token>"', { side: 'downstream' });
    const body = await readBody(stream);
    const zone = body.zone;
    if (typeof zone !== 'string' || !ZONE_NAME.test(zone)) throw malformed('bootstrap: "zone" must be a DNS label');
    if (options.connected(zone)) {
      throw new TrellisError(CODE.ZONE_CONFLICT, `zone "${zone}" is connected now; a second control plane with its name is refused`, { side: 'downstream', retryable: true });
    }
    const issued = await options.tokens.spend(bearer, zone, async (): Promise<ZoneCertificate> => {
      const cert = await sign(options, zone, body.csrPem);
      if (body.zoneCa !== true || options.root === undefined) return cert;
      // One mesh root, an intermediate per zone: the zone signs its workloads with it, so every zone's
      // workloads chain to the same root. Sent once, over this TLS 1.3 session to a token holder.
      const intermediate = await options.root.createIntermediate({ name: `Trellis zone ${zone}`.slice(0, 64), zone });
      return { ...cert, zoneCa: { certChainPem: intermediate.certChainPem, keyPem: intermediate.exportKeyPem(), bundlePem: options.root.bundle.toPem() } };
    });
    options.log.info({ zone, serial: issued.serial }, 'zone joined with a zone token');
    reply(stream, 200, issued);
    return;
  }
  throw new TrellisError(CODE.CONTROL_NOT_FOUND, `no ${String(path)}`, { side: 'downstream' });
}
