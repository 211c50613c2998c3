/**
 * A zone control plane's connection to the global one: HTTP/2 over TLS 1.3, the global's bundle as the
 * only CA, the global recognised by its SPIFFE ID (`.../sa/trellis-global`) before a byte is sent, and
 * the zone certificate as the client certificate once the zone has one. Also the zone's identity files:
 * bootstrapped once with a zone token, renewed at half-life.
 *
 *   <data-dir>/global/zone-identity.json (0600): {keyPem, certChainPem}, one atomic write, so a crash
 *   never pairs a new key with an old certificate
 */
import { connect, type ClientHttp2Session } from 'node:http2';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { writeFileAtomic, readFileIfExists } from '../../common/atomic-file.js';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { globalIdentity, zoneIdentity } from '../global/zone-identity.js';
import { ZONE_SYNC_PATHS } from './protocol.js';
import { storeCorrupt } from '../file-store.js';
import { CertificateAuthority } from '../../ca/authority.js';
import { writeCaFiles } from '../../ca/store.js';

export interface GlobalEndpoint {
  readonly url: URL;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  /** The global's trust bundle (`--global-ca`). */
  readonly bundlePem: string;
}

export interface ZoneCredentials {
  readonly keyPem: string;
  readonly certChainPem: string;
  readonly notAfter: Date;
}

const MAX_REPLY_BYTES = 256 * 1024;
export const GLOBAL_REQUEST_TIMEOUT_MS = 10_000;

function unreachable(message: string, cause?: unknown): TrellisError {
  return new TrellisError(CODE.ZONE_NOT_CONNECTED, message, { side: 'upstream', retryable: true, ...(cause === undefined ? {} : { cause }) });
}

/** Opens an HTTP/2 session to the global; resolves once TLS (and the global's identity) checked out. */
export function openSession(endpoint: GlobalEndpoint, credentials?: ZoneCredentials): Promise<ClientHttp2Session> {
  const expected = globalIdentity(endpoint.trustDomain, endpoint.rootNamespace).toString();
  return new Promise((resolve, reject) => {
    const session = connect(endpoint.url, {
      ca: endpoint.bundlePem,
      minVersion: 'TLSv1.3',
      ...(credentials === undefined ? {} : { key: credentials.keyPem, cert: credentials.certChainPem }),
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const uris = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
        return uris.length === 1 && uris[0] === expected ? undefined : new Error(`${endpoint.url.host} is not this mesh's global control plane (its certificate names ${uris.join(', ') || 'no SPIFFE ID'})`);
      },
    });
    const timer = setTimeout(() => {
      session.destroy();
      reject(unreachable(`no TLS session with the global control plane at ${endpoint.url.host} within ${GLOBAL_REQUEST_TIMEOUT_MS} ms`));
    }, GLOBAL_REQUEST_TIMEOUT_MS);
    session.once('connect', () => {
      clearTimeout(timer);
      resolve(session);
    });
    session.once('error', (err) => {
      clearTimeout(timer);
      reject(unreachable(`cannot reach the global control plane at ${endpoint.url.host}: ${err.message}`, err));
    });
  });
}

/** One JSON request on `session`; a refusal carries the global's error code. */
export function postJson(session: ClientHttp2Session, path: string, body: unknown, bearer?: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json', ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }) });
    stream.setTimeout(GLOBAL_REQUEST_TIMEOUT_MS, () => stream.close());
    let status = 0;
    const chunks: Buffer[] = [];
    let bytes = 0;
    stream.on('response', (headers) => (status = Number(headers[':status'])));
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_REPLY_BYTES) stream.close();
      else chunks.push(chunk);
    });
    stream.on('error', (err) => reject(unreachable(`the global control plane did not answer ${path}: ${err.message}`, err)));
    stream.on('close', () => {
      let value: Record<string, unknown> | undefined;
      try {
        value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        value = undefined;
      }
      if (status === 200 && value !== undefined) return resolve(value);
      const error = value?.error as { code?: string; message?: string } | undefined;
      if (typeof error?.code === 'string') return reject(new TrellisError(error.code, `the global control plane refused ${path}: ${error.message ?? ''}`, { side: 'upstream' }));
      reject(unreachable(`the global control plane answered ${path} with status ${status}`));
    });
    stream.end(JSON.stringify(body));
  });
}

export function zoneFiles(dataDir: string): { dir: string; identity: string; ca: string } {
  const dir = join(dataDir, 'global');
  return { dir, identity: join(dir, 'zone-identity.json'), ca: join(dir, 'ca') };
}

/**
 * Before a zone's CAs are set up: its intermediate under the mesh root, joining the global for it the
 * first time (with the token); undefined when the zone joined before without one, or the global cannot
 * issue one (its root is the operator's and may not sign CAs): the zone then keeps its own root.
 */
export async function zoneCaDir(endpoint: GlobalEndpoint, dataDir: string, zone: string, token: string | undefined): Promise<string | undefined> {
  const files = zoneFiles(dataDir);
  const has = async (): Promise<boolean> => (await readFileIfExists(join(files.ca, 'ca.crt'))) !== undefined;
  if (await has()) return files.ca;
  if ((await loadZoneCredentials(dataDir)) !== undefined || token === undefined) return undefined;
  await obtainZoneCredentials(endpoint, dataDir, zone, { token, zoneCa: true });
  return (await has()) ? files.ca : undefined;
}

/** The zone's stored credentials, when it has joined before and they have not expired. */
export async function loadZoneCredentials(dataDir: string): Promise<ZoneCredentials | undefined> {
  const file = zoneFiles(dataDir).identity;
  const text = await readFileIfExists(file);
  if (text === undefined) return undefined;
  let keyPem: unknown;
  let certChainPem: unknown;
  try {
    ({ keyPem, certChainPem } = JSON.parse(text) as Record<string, unknown>);
  } catch {
    keyPem = undefined;
  }
  if (typeof keyPem !== 'string' || typeof certChainPem !== 'string') throw storeCorrupt(file, 'expected {keyPem, certChainPem}');
  const notAfter = new Date(new X509Certificate(certChainPem).validTo);
  return notAfter.getTime() > Date.now() ? { keyPem, certChainPem, notAfter } : undefined;
}

/** A new key and a certificate from the global: with a zone token (`bearer`) or the current certificate. */
export async function obtainZoneCredentials(endpoint: GlobalEndpoint, dataDir: string, zone: string, via: { token: string; zoneCa?: boolean } | { current: ZoneCredentials }): Promise<ZoneCredentials> {
  const key = await generateWorkloadKey();
  const csrPem = await createCsr(key, zoneIdentity(endpoint.trustDomain, endpoint.rootNamespace, zone));
  const session = await openSession(endpoint, 'current' in via ? via.current : undefined);
  let reply: Record<string, unknown>;
  try {
    reply = 'token' in via
      ? await postJson(session, ZONE_SYNC_PATHS.bootstrap, { zone, csrPem, zoneCa: via.zoneCa === true }, via.token)
      : await postJson(session, ZONE_SYNC_PATHS.renew, { csrPem });
  } finally {
    session.close();
  }
  if (typeof reply.certChainPem !== 'string' || typeof reply.notAfter !== 'string') throw unreachable('the global control plane sent no certificate');
  const files = zoneFiles(dataDir);
  await fs.mkdir(files.dir, { recursive: true, mode: 0o700 });
  const zoneCa = reply.zoneCa as { certChainPem?: unknown; keyPem?: unknown; bundlePem?: unknown } | undefined;
  if (zoneCa !== undefined && typeof zoneCa.certChainPem === 'string' && typeof zoneCa.keyPem === 'string' && typeof zoneCa.bundlePem === 'string') {
    // Validated before it is kept: the key matches, it chains to the bundle, it is of this trust domain.
    CertificateAuthority.fromPem({ certChainPem: zoneCa.certChainPem, keyPem: zoneCa.keyPem, bundlePem: zoneCa.bundlePem, trustDomain: endpoint.trustDomain });
    await writeCaFiles(files.ca, { certChainPem: zoneCa.certChainPem, keyPem: zoneCa.keyPem, bundlePem: zoneCa.bundlePem });
  }
  await writeFileAtomic(files.identity, JSON.stringify({ keyPem: key.keyPem, certChainPem: reply.certChainPem }), { mode: 0o600 });
  return { keyPem: key.keyPem, certChainPem: reply.certChainPem, notAfter: new Date(reply.notAfter) };
}
