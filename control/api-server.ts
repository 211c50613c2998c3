/**
 * The control plane's HTTPS API (protocol in api/control-protocol.ts): issuance with a bootstrap
 * credential, renewal and everything else over mutual TLS, the watch streams, and token administration.
 *
 * One listener serves both kinds of clients: the TLS handshake asks for a client certificate but does
 * not require one (a workload's first request has none), and each route then insists on what it needs.
 * Limits: header bytes, bodies (64 KiB), connections, and timeouts for requests that stall.
 *
 * Where endpoints come from depends on the mode: in universal mode an agent's watch registers its
 * endpoint and its health reports set its health; in Kubernetes mode (`endpointsFromAgents: false`) the
 * API's EndpointSlices are the authority, so an agent's watch only subscribes (it still gets its
 * certificates and config), and its health reports and deregistration are answered and change nothing.
 *
 * In universal mode an instance belongs to the workload whose certificate registered it
 * (`instance-ownership.ts`): only that workload (across its renewals, `certificate-lineage.ts`) may
 * re-register, report for or deregister it, and one workload and one service may hold only so many.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import {
  CONTROL_PATHS,
  CONTROL_PROTOCOL_VERSION,
  MAX_REQUEST_BODY_BYTES,
  PROTOCOL_HEADER,
  type CreateTokenResponse,
  type IssueResponse,
  type TokenRecordView,
} from '../api/control-protocol.js';
import { verifyPeerCertificate, type PeerIdentity } from '../ca/verify.js';
import { describeError, isTrellisError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { BootstrapAuthenticator } from './authenticator.js';
import { FailedBootstrapLimiter } from './bootstrap-limiter.js';
import { CertificateLineage } from './certificate-lineage.js';
import { bearerOf, HttpError, readJsonBody, sendError, sendJson, statusOf } from './http-io.js';
import type { IdentityIssuer } from './identity-issuer.js';
import { checkClaim, DEFAULT_INSTANCE_LIMITS, mayChange, normaliseSerial, type InstanceLimits, type InstanceOwner } from './instance-ownership.js';
import type { ControlMetrics } from './metrics.js';
import { validateHealthReport, validateRegistration } from './registration.js';
import type { ServiceRegistry } from './registry.js';
import type { ControlStore, StoredRegistration, TokenRecord } from './store.js';
import type { TokenService } from './token-service.js';
import type { WatchHub, WatchSink } from './watch-hub.js';
import { SUMMARY_PATH } from '../api/golden-summary.js';
import type { SummaryIntake } from './golden/summary-intake.js';
import { CODE } from '../common/error-codes.js';

export interface ApiServerOptions {
  readonly trustDomain: string;
  readonly zone: string;
  readonly issuer: IdentityIssuer;
  /** The first that accepts a bearer credential authenticates it. */
  readonly authenticators: readonly BootstrapAuthenticator[];
  /** Whether agents' registrations and health reports make the registry's endpoints (default true). */
  readonly endpointsFromAgents?: boolean;
  /** Renewal links, shared with start-up (which seeds it from the store); default a fresh one. */
  readonly lineage?: CertificateLineage;
  /** Default `DEFAULT_INSTANCE_LIMITS`. */
  readonly instanceLimits?: InstanceLimits;
  readonly tokens: TokenService;
  readonly adminToken: string;
  readonly registry: ServiceRegistry;
  readonly hub: WatchHub;
  readonly store: ControlStore;
  readonly metrics: ControlMetrics;
  readonly log: Logger;
  readonly tls: { readonly certChainPem: string; readonly keyPem: string; readonly trustBundlePem: string };
  /** The bundle in force for `GET /v1/trust-bundle`, when it can change after start (root rotation); default `tls.trustBundlePem`. */
  readonly currentTrustBundlePem?: () => string;
  readonly maxConnections: number;
  /** Failed bootstrap attempts per source address (bootstrap-limiter.ts); default: its default limit. */
  readonly failedBootstraps?: FailedBootstrapLimiter;
  /** A join token was revoked through the API: its certificates go on the revoked list now. */
  readonly onTokenRevoked?: () => void;
  /** Agents' golden-metrics summaries (`POST /v1/summary`); absent: that path is 404 and agents stop sending. */
  readonly summaries?: SummaryIntake;
}

type ResolvedOptions = ApiServerOptions & {
  readonly failedBootstraps: FailedBootstrapLimiter;
  readonly lineage: CertificateLineage;
  readonly instanceLimits: InstanceLimits;
};

export function createApiServer(given: ApiServerOptions): Server {
  const options: ResolvedOptions = {
    ...given,
    failedBootstraps: given.failedBootstraps ?? new FailedBootstrapLimiter(),
    lineage: given.lineage ?? new CertificateLineage(),
    instanceLimits: given.instanceLimits ?? DEFAULT_INSTANCE_LIMITS,
  };
  const server = createServer(
    {
      key: options.tls.keyPem,
      cert: options.tls.certChainPem,
      ca: options.tls.trustBundlePem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
      maxHeaderSize: 16 * 1024,
      // A request must arrive whole within this time; a watch's response can then stream for days.
      requestTimeout: 30_000,
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      void handle(options, req, res).catch((err: unknown) => {
        if (statusOf(err) >= 500) options.log.error({ err: describeError(err), path: req.url }, 'control API request failed');
        else options.log.info({ err: describeError(err), path: req.url, status: statusOf(err) }, 'control API request refused');
        sendError(res, err);
      });
    },
  );
  server.maxConnections = options.maxConnections;
  // TLS handshakes that never finish must not hold a connection slot.
  server.on('tlsClientError', (err) => options.log.debug({ err: err.message }, 'TLS handshake with a client failed'));
  return server;
}

/** The caller's identity, and its certificate's serial (which workload of the service it is). */
function peerOf(options: ResolvedOptions, req: IncomingMessage): PeerIdentity & { readonly serial: string } {
  const socket = req.socket as TLSSocket;
  const cert = socket.getPeerX509Certificate?.();
  if (cert === undefined) throw new HttpError(CODE.CONTROL_CLIENT_CERT_REQUIRED, 'this path needs the workload certificate (mutual TLS)');
  if (!socket.authorized) {
    throw new HttpError(CODE.CONTROL_CLIENT_CERT_UNTRUSTED, `client certificate refused: ${String(socket.authorizationError ?? 'not issued by this mesh')}`);
  }
  return { ...verifyPeerCertificate(cert, { trustDomain: options.trustDomain }), serial: normaliseSerial(cert.serialNumber) };
}

function checkProtocol(req: IncomingMessage): void {
  const version = req.headers[PROTOCOL_HEADER];
  if (version !== undefined && version !== String(CONTROL_PROTOCOL_VERSION)) {
    throw new HttpError(CODE.CONTROL_PROTOCOL_UNSUPPORTED, `protocol version ${String(version)} is not supported (this control plane speaks ${CONTROL_PROTOCOL_VERSION})`);
  }
}

async function handle(options: ResolvedOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkProtocol(req);
  const path = (req.url ?? '/').split('?')[0] as string;
  const method = req.method ?? 'GET';
  if (method === 'POST' && path === CONTROL_PATHS.issue) return issue(options, req, res);
  if (method === 'POST' && path === CONTROL_PATHS.renew) return renew(options, req, res);
  if (method === 'POST' && path === CONTROL_PATHS.watch) return watch(options, req, res);
  if (method === 'POST' && path === SUMMARY_PATH && options.summaries !== undefined) {
    const peer = peerOf(options, req);
    await options.summaries.accept(req, { namespace: peer.namespace, service: peer.service, workload: options.lineage.workloadOf(peer.serial) });
    res.writeHead(204, { [PROTOCOL_HEADER]: String(CONTROL_PROTOCOL_VERSION) }).end();
    return;
  }
  if (path.startsWith(CONTROL_PATHS.endpointPrefix) && (method === 'PUT' || method === 'DELETE')) {
    return endpoint(options, req, res, decodeURIComponent(path.slice(CONTROL_PATHS.endpointPrefix.length)));
  }
  if (method === 'GET' && path === CONTROL_PATHS.trustBundle) {
    res.writeHead(200, { 'content-type': 'application/x-pem-file', [PROTOCOL_HEADER]: String(CONTROL_PROTOCOL_VERSION) });
    res.end(options.currentTrustBundlePem?.() ?? options.tls.trustBundlePem);
    return;
  }
  if (path === CONTROL_PATHS.adminTokens || path.startsWith(CONTROL_PATHS.adminTokenPrefix)) return admin(options, req, res, path, method);
  throw new HttpError(CODE.CONTROL_NOT_FOUND, `no ${method} ${path}`);
}

async function issue(options: ResolvedOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const bearer = bearerOf(req);
  const source = req.socket.remoteAddress ?? 'unknown';
  const wait = options.failedBootstraps.retryAfterMs(source);
  if (wait > 0) {
    options.metrics.certificates.inc({ kind: 'issue', result: 'rate-limited' });
    res.setHeader('retry-after', String(Math.ceil(wait / 1000)));
    throw new HttpError(CODE.CONTROL_BOOTSTRAP_RATE_LIMITED, `too many refused bootstrap attempts from ${source} (limit: ${options.failedBootstraps.limit.burst}, then one per ${options.failedBootstraps.limit.refillMs / 1000} s); retry in ${Math.ceil(wait / 1000)} s`);
  }
  try {
    if (bearer === undefined) throw new HttpError(CODE.CONTROL_CREDENTIAL_REQUIRED, 'issuance needs "Authorization: Bearer <join token>"');
    const authenticator = options.authenticators.find((a) => a.accepts(bearer));
    if (authenticator === undefined) throw new HttpError(CODE.CONTROL_CREDENTIAL_UNKNOWN, 'the bearer credential is of no kind this control plane accepts');
    const who = await authenticator.authenticate(bearer);
    const body = (await readJsonBody(req, MAX_REQUEST_BODY_BYTES)) as { csrPem?: unknown };
    const signOne = (): Promise<IssueResponse> => options.issuer.issue(body.csrPem, who.namespace, who.service).catch((err: unknown) => {
      if (isTrellisError(err) && err.code === CODE.CA_CSR_SAN_MISMATCH) {
        throw new HttpError(CODE.TOKEN_WRONG_SERVICE, `the credential is for ${who.namespace}/${who.service}; ${err.message}`);
      }
      throw err;
    });
    // A join token is consumed (and the serial bound to it) durably before the certificate leaves.
    const issued = who.spend === undefined ? await signOne() : await who.spend(signOne);
    options.metrics.certificates.inc({ kind: 'issue', result: 'ok' });
    options.log.info({ spiffeId: issued.spiffeId, credential: who.credential, notAfter: issued.notAfter, serial: issued.serial }, 'certificate issued');
    sendJson(res, 200, issued);
  } catch (err) {
    const status = statusOf(err);
    options.metrics.certificates.inc({ kind: 'issue', result: status >= 500 ? 'error' : 'refused' });
    if (status === 401 || status === 403) options.failedBootstraps.failed(source);
    throw err;
  }
}

async function renew(options: ResolvedOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const peer = peerOf(options, req);
    const body = (await readJsonBody(req, MAX_REQUEST_BODY_BYTES)) as { csrPem?: unknown };
    // A certificate from a join token renews only while the token is not revoked, and its renewal joins the lineage.
    const issued = await options.tokens.renew(peer.serial, () => options.issuer.issue(body.csrPem, peer.namespace, peer.service));
    // The new certificate is the same workload: it keeps the instances the old one registered.
    options.lineage.renewed(peer.serial, normaliseSerial(issued.serial));
    options.metrics.certificates.inc({ kind: 'renew', result: 'ok' });
    options.log.info({ spiffeId: issued.spiffeId, notAfter: issued.notAfter, serial: issued.serial }, 'certificate renewed');
    sendJson(res, 200, issued);
  } catch (err) {
    options.metrics.certificates.inc({ kind: 'renew', result: statusOf(err) >= 500 ? 'error' : 'refused' });
    throw err;
  }
}

async function watch(options: ResolvedOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const peer = peerOf(options, req);
  const registration = validateRegistration(await readJsonBody(req, MAX_REQUEST_BODY_BYTES));
  if (registration.zone !== undefined && registration.zone !== options.zone) {
    throw new HttpError(CODE.CONTROL_WRONG_ZONE, `this control plane serves zone "${options.zone}", the agent says "${registration.zone}"`);
  }
  const ownsEndpoint = options.endpointsFromAgents !== false;
  const existing = options.registry.get(registration.instanceId);
  const stored: StoredRegistration & { readonly owner: InstanceOwner } = Object.freeze({
    instanceId: registration.instanceId,
    service: peer.service,
    namespace: peer.namespace,
    zone: options.zone,
    address: registration.address,
    tunnelPort: registration.tunnelPort,
    ports: registration.ports,
    upstreams: registration.upstreams,
    healthy: registration.healthy,
    ...(registration.export === undefined ? {} : { export: registration.export }),
    updatedAt: new Date().toISOString(),
    ...(registration.labels === undefined ? {} : { labels: registration.labels }),
    owner: Object.freeze({ serial: peer.serial, workload: options.lineage.workloadOf(peer.serial) }),
  });
  let lease = 0;
  if (ownsEndpoint) {
    try {
      checkClaim(options.registry, stored, options.instanceLimits);
    } catch (err) {
      refused(options, err, peer, stored.instanceId);
      throw err;
    }
    // Into the registry in the same turn as the check, before the write: registrations racing each other
    // cannot all pass a cap. Subscribers may hear of it before it is on disk; a failed write takes it back.
    lease = options.registry.connect(stored);
    // A reconnect with an unchanged registration (every agent, after a control-plane restart) costs no fsync.
    if (existing === undefined || !sameRegistration(existing, stored)) {
      await options.store.putRegistration(stored).catch((err: unknown) => {
        if (existing === undefined) options.registry.remove(stored.instanceId);
        else options.registry.disconnect(stored.instanceId, lease);
        throw err;
      });
    }
  }
  if (req.socket.destroyed) {
    if (ownsEndpoint) options.registry.disconnect(stored.instanceId, lease);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', [PROTOCOL_HEADER]: String(CONTROL_PROTOCOL_VERSION) });
  req.socket.setNoDelay(true);
  req.socket.setKeepAlive(true, 10_000);
  const sink: WatchSink = {
    write: (line) => void res.write(line),
    get bufferedBytes() {
      return res.writableLength;
    },
    close: () => res.destroy(),
  };
  const end = options.hub.open({ instanceId: stored.instanceId, service: stored.service, namespace: stored.namespace, spiffeId: peer.spiffeId, upstreams: stored.upstreams }, sink);
  options.metrics.agentsConnected.inc();
  options.log.info({ spiffeId: peer.spiffeId, instanceId: stored.instanceId, address: stored.address, tunnelPort: stored.tunnelPort }, 'agent connected');
  res.on('close', () => {
    end();
    if (ownsEndpoint) options.registry.disconnect(stored.instanceId, lease);
    options.metrics.agentsConnected.dec();
    options.log.info({ spiffeId: peer.spiffeId, instanceId: stored.instanceId }, 'agent disconnected');
  });
}

async function endpoint(options: ResolvedOptions, req: IncomingMessage, res: ServerResponse, instanceId: string): Promise<void> {
  const peer = peerOf(options, req);
  if (options.endpointsFromAgents === false) {
    // Readiness reaches the registry through the pod's probes and the EndpointSlice; the report is still checked.
    const report = req.method === 'DELETE' ? undefined : validateHealthReport(await readJsonBody(req, MAX_REQUEST_BODY_BYTES));
    sendJson(res, 200, { ...(report === undefined ? { deregistered: instanceId } : { healthy: report.healthy }), ignored: 'endpoints come from the Kubernetes API' });
    return;
  }
  const existing = options.registry.get(instanceId);
  if (existing === undefined) throw new HttpError(CODE.CONTROL_UNKNOWN_INSTANCE, `no registered instance ${instanceId}`);
  if (existing.service !== peer.service || existing.namespace !== peer.namespace || !mayChange(existing, options.lineage.workloadOf(peer.serial))) {
    const err = new HttpError(CODE.CONTROL_INSTANCE_TAKEN, `instance ${instanceId} belongs to another workload`);
    refused(options, err, peer, instanceId);
    throw err;
  }
  if (req.method === 'DELETE') {
    options.registry.remove(instanceId);
    await options.store.deleteRegistration(instanceId);
    options.log.info({ spiffeId: peer.spiffeId, instanceId }, 'agent deregistered');
    sendJson(res, 200, { deregistered: instanceId });
    return;
  }
  const report = validateHealthReport(await readJsonBody(req, MAX_REQUEST_BODY_BYTES));
  const updated = options.registry.setHealth(instanceId, report.healthy);
  if (updated !== undefined && updated.healthy !== existing.healthy) {
    options.log.info({ spiffeId: peer.spiffeId, instanceId, healthy: report.healthy, detail: report.detail }, 'app health changed');
    await options.store.putRegistration(updated);
  }
  sendJson(res, 200, { healthy: report.healthy });
}

/** A registration or change refused for ownership or a cap: counted, and a warning (someone may be polluting the registry). */
function refused(options: ResolvedOptions, err: unknown, peer: PeerIdentity & { readonly serial: string }, instanceId: string): void {
  if (!isTrellisError(err)) return;
  options.metrics.registrationsRefused.inc({ code: err.code });
  options.log.warn({ spiffeId: peer.spiffeId, serial: peer.serial, instanceId, code: err.code, reason: err.message }, 'registration refused');
}

function sameRegistration(a: StoredRegistration, b: StoredRegistration): boolean {
  const { updatedAt: _a, ...restA } = a;
  const { updatedAt: _b, ...restB } = b;
  return JSON.stringify(restA) === JSON.stringify(restB);
}

function isAdmin(options: ResolvedOptions, req: IncomingMessage): boolean {
  const bearer = bearerOf(req);
  if (bearer === undefined) return false;
  const given = Buffer.from(bearer);
  const expected = Buffer.from(options.adminToken);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function tokenView(record: TokenRecord): TokenRecordView {
  return {
    id: record.id, service: record.service, namespace: record.namespace, createdAt: record.createdAt, expiresAt: record.expiresAt,
    ...(record.role === undefined ? {} : { role: record.role }),
    ...(record.revokedAt === undefined ? {} : { revokedAt: record.revokedAt }),
    ...(record.uses === undefined ? {} : { uses: record.uses, usesLeft: record.usesLeft ?? 0 }),
    ...(record.certificates === undefined ? {} : { certificates: record.certificates.filter((c) => Date.parse(c.notAfter) > Date.now()).length }),
  };
}

async function admin(options: ResolvedOptions, req: IncomingMessage, res: ServerResponse, path: string, method: string): Promise<void> {
  if (!isAdmin(options, req)) throw new HttpError(CODE.CONTROL_ADMIN_REQUIRED, 'token administration needs the admin credential (<data-dir>/admin-token)');
  if (path === CONTROL_PATHS.adminTokens && method === 'POST') {
    const body = (await readJsonBody(req, MAX_REQUEST_BODY_BYTES)) as { service?: unknown; namespace?: unknown; ttlMs?: unknown; uses?: unknown; role?: unknown };
    if (typeof body.service !== 'string' || typeof body.namespace !== 'string' || typeof body.ttlMs !== 'number' || (body.uses !== undefined && typeof body.uses !== 'number') || (body.role !== undefined && body.role !== 'ingress')) {
      throw new HttpError(CODE.CONTROL_BAD_REQUEST, 'expected {"service": string, "namespace": string, "ttlMs": number, "uses"?: number, "role"?: "ingress"}');
    }
    const created = await options.tokens.create(body.service, body.namespace, body.ttlMs, body.uses, body.role);
    options.log.info({ id: created.record.id, service: created.record.service, namespace: created.record.namespace, expiresAt: created.record.expiresAt, uses: created.record.uses, ...(created.record.role === undefined ? {} : { role: created.record.role }) }, 'join token created');
    sendJson(res, 201, { ...tokenView(created.record), token: created.token } satisfies CreateTokenResponse);
    return;
  }
  if (path === CONTROL_PATHS.adminTokens && method === 'GET') {
    sendJson(res, 200, { tokens: (await options.tokens.list()).map(tokenView) });
    return;
  }
  if (path.startsWith(CONTROL_PATHS.adminTokenPrefix) && method === 'DELETE') {
    const id = decodeURIComponent(path.slice(CONTROL_PATHS.adminTokenPrefix.length));
    try {
      const record = await options.tokens.revoke(id);
      options.log.info({ id, certificates: record.certificates?.length ?? 0 }, 'join token revoked');
      options.onTokenRevoked?.();
      sendJson(res, 200, tokenView(record));
    } catch (err) {
      if (isTrellisError(err) && err.code === CODE.TOKEN_UNKNOWN) throw new HttpError(err.code, err.message, 404);
      throw err;
    }
    return;
  }
  throw new HttpError(CODE.CONTROL_METHOD_NOT_ALLOWED, `${method} ${path} is not supported`);
}
