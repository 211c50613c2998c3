/**
 * A client of the control plane's API (the agent and `trellis token` use it): HTTPS with the mesh trust
 * bundle as the only CA, the control plane recognised by its SPIFFE ID rather than a host name, optional
 * client certificate (mutual TLS) or bearer credential, bounded response bodies, and timeouts.
 */
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { PeerCertificate } from 'node:tls';
import { trustDomainOf } from '../ca/authority.js';
import { parseCertificatesPem } from '../ca/certificate.js';
import { TrellisError } from '../common/errors.js';
import { CONTROL_PLANE_SERVICE, CONTROL_PROTOCOL_VERSION, PROTOCOL_HEADER, type ErrorBody } from './control-protocol.js';
import { CODE } from '../common/error-codes.js';

export interface ControlEndpoint {
  /** `https://host:port` of the control plane's API. */
  readonly url: URL;
  /** Roots that may have issued the control plane's certificate. */
  readonly trustBundlePem: string;
  /** When known, the control plane's certificate must name this trust domain. */
  readonly trustDomain?: string;
  readonly rootNamespace: string;
}

export interface ClientCertificate {
  readonly certChainPem: string;
  readonly keyPem: string;
}

export interface ControlRequest {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  readonly body?: unknown;
  readonly bearer?: string;
  readonly clientCert?: ClientCertificate;
  readonly timeoutMs?: number;
}

/** A response bigger than this is not one of the control plane's (a snapshot for 10k endpoints is ~2 MB). */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** The control plane's status codes and error codes, kept for callers that decide on them (retry or not). */
export class ControlError extends TrellisError {
  constructor(readonly status: number, code: string, message: string, cause?: unknown) {
    super(code, message, { side: 'upstream', retryable: status === 0 || status >= 500 || status === 429, ...(cause === undefined ? {} : { cause }) });
  }
}

/**
 * The trust domains a control plane of this mesh may belong to: the one the caller knows, else those the
 * bundle's roots name (a Trellis root carries `spiffe://<td>`); empty when neither says (an operator root
 * without a URI SAN), and then the chain alone decides.
 */
function controlTrustDomains(endpoint: ControlEndpoint): ReadonlySet<string> {
  if (endpoint.trustDomain !== undefined) return new Set([endpoint.trustDomain]);
  try {
    return new Set(parseCertificatesPem(endpoint.trustBundlePem, 'trust bundle').map((root) => trustDomainOf(root)).filter((td): td is string => td !== undefined));
  } catch {
    return new Set();
  }
}

/**
 * node:tls has verified the chain against the trust bundle when this runs, and the request (with its
 * bearer credential) is written only after it passes: the leaf must carry exactly one URI SAN, and it
 * must be the control plane's own SPIFFE ID. A workload certificate of any other service, the root
 * namespace's included, is refused (join tokens and service-account tokens cannot name the root
 * namespace: control/reserved-identity.ts).
 */
function checkControlIdentity(endpoint: ControlEndpoint): (host: string, cert: PeerCertificate) => Error | undefined {
  const trustDomains = controlTrustDomains(endpoint);
  return (_host, cert) => {
    const uris = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
    const m = uris.length === 1 ? /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uris[0] as string) : null;
    const ok = m !== null && m[3] === CONTROL_PLANE_SERVICE && m[2] === endpoint.rootNamespace && (trustDomains.size === 0 || trustDomains.has(m[1] as string));
    if (ok) return undefined;
    return new Error(`the server at ${endpoint.url.host} is not a Trellis control plane of this mesh (its certificate names ${uris.join(', ') || 'no SPIFFE ID'})`);
  };
}

export function requestOptions(endpoint: ControlEndpoint, req: Pick<ControlRequest, 'method' | 'path' | 'bearer' | 'clientCert'>): RequestOptions {
  const headers: Record<string, string> = { [PROTOCOL_HEADER]: String(CONTROL_PROTOCOL_VERSION), accept: 'application/json' };
  if (req.bearer !== undefined) headers.authorization = `Bearer ${req.bearer}`;
  return {
    method: req.method,
    protocol: 'https:',
    hostname: endpoint.url.hostname.replace(/^\[|\]$/g, ''),
    port: endpoint.url.port === '' ? 443 : Number(endpoint.url.port),
    path: req.path,
    headers,
    ca: endpoint.trustBundlePem,
    checkServerIdentity: checkControlIdentity(endpoint),
    minVersion: 'TLSv1.3',
    // Every request gets its own connection: the watch holds one, and a request must not queue behind it.
    agent: false,
    ...(req.clientCert === undefined ? {} : { cert: req.clientCert.certChainPem, key: req.clientCert.keyPem }),
  };
}

async function readBody(res: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new ControlError(0, CODE.CONTROL_RESPONSE_TOO_LARGE, `control plane response larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Opens a request and resolves with the response once its status line arrived (for the watch stream). */
export function openControlStream(endpoint: ControlEndpoint, req: ControlRequest): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    const options = requestOptions(endpoint, req);
    if (body !== undefined) (options.headers as Record<string, string>)['content-type'] = 'application/json';
    const outgoing = httpsRequest(options, resolve);
    const timeout = setTimeout(() => outgoing.destroy(new ControlError(0, CODE.CONTROL_TIMEOUT, `no response from ${endpoint.url.host} within ${req.timeoutMs ?? 10_000} ms`)), req.timeoutMs ?? 10_000);
    outgoing.once('response', () => clearTimeout(timeout));
    outgoing.on('error', (err) => {
      clearTimeout(timeout);
      reject(err instanceof ControlError ? err : new ControlError(0, CODE.CONTROL_UNREACHABLE, `cannot reach the control plane at ${endpoint.url.host}: ${err.message}`, err));
    });
    outgoing.end(body);
  });
}

/** One JSON request/response; non-2xx replies become ControlErrors carrying the server's code. */
export async function controlRequest<T>(endpoint: ControlEndpoint, req: ControlRequest): Promise<T> {
  const res = await openControlStream(endpoint, req);
  const text = await readBody(res, MAX_RESPONSE_BYTES).catch((err: unknown) => {
    throw err instanceof ControlError ? err : new ControlError(0, CODE.CONTROL_UNREACHABLE, `control plane connection failed: ${(err as Error).message}`, err);
  });
  const status = res.statusCode ?? 0;
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    throw new ControlError(status, CODE.CONTROL_BAD_RESPONSE, `control plane replied ${status} with a body that is not JSON`);
  }
  if (status < 200 || status >= 300) {
    const error = (parsed as ErrorBody | undefined)?.error;
    throw new ControlError(status, error?.code ?? CODE.CONTROL_HTTP_ERROR, error?.message ?? `control plane replied ${status}`);
  }
  return parsed as T;
}
