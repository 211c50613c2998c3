/**
 * Verifying X.509-SVIDs.
 *
 * `verifyPeerCertificate` runs on every mTLS handshake in the proxy: node:tls has already built and checked
 * the chain against the trust bundle (`ca: bundle`), so this adds only the SPIFFE leaf rules: exactly one
 * URI SAN holding a workload ID of the expected trust domain, not a CA, inside its validity window,
 * digitalSignature allowed. `verifyChain` is the complete offline check (path building to a bundle root,
 * signatures, validity, CA flags, key usage, pathLen) for `trellis ca inspect` and for tests.
 */
import { verify, createPublicKey, X509Certificate as NodeX509Certificate, type KeyObject, type X509Certificate } from 'node:crypto';
import { TrellisError } from '../common/errors.js';
import { parseCertificateDer, parseCertificatesPem, type ParsedCertificate } from './certificate.js';
import { SIGNATURE_DIGESTS } from './keys.js';
import { parseSpiffeId, parseWorkloadId } from './spiffe-id.js';
import type { TrustBundle } from './bundle.js';
import { CODE } from '../common/error-codes.js';

export interface PeerIdentity {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly service: string;
  readonly notAfter: Date;
}

export interface LeafCheckOptions {
  readonly trustDomain: string;
  readonly now?: Date;
}

/** Longest chain accepted (leaf, intermediates, root): Trellis uses three, plug-in CAs may add a level or two. */
export const MAX_CHAIN_LENGTH = 6;

function refuse(code: string, message: string, details?: Record<string, unknown>): TrellisError {
  return new TrellisError(code, message, { side: 'downstream', retryable: false, ...(details === undefined ? {} : { details }) });
}

export function verifyPeerCertificate(cert: X509Certificate, options: LeafCheckOptions): PeerIdentity {
  let parsed: ParsedCertificate;
  try {
    parsed = parseCertificateDer(cert.raw);
  } catch (err) {
    throw new TrellisError(CODE.PEER_CERT_INVALID, 'peer certificate could not be parsed', { side: 'downstream', cause: err });
  }
  return checkLeaf(parsed, options);
}

/** The SPIFFE leaf rules on an already parsed certificate. */
export function checkLeaf(cert: ParsedCertificate, options: LeafCheckOptions): PeerIdentity {
  const now = options.now ?? new Date();
  if (cert.basicConstraints?.ca === true) throw refuse(CODE.PEER_IS_CA, 'peer presented a CA certificate as its leaf');
  if (cert.keyUsage !== undefined && (cert.keyUsage.usages.has('keyCertSign') || cert.keyUsage.usages.has('cRLSign'))) {
    throw refuse(CODE.PEER_IS_CA, 'peer leaf certificate may sign certificates (keyCertSign/cRLSign)');
  }
  if (cert.keyUsage === undefined || !cert.keyUsage.usages.has('digitalSignature')) {
    throw refuse(CODE.PEER_KEY_USAGE, 'peer leaf certificate does not allow digitalSignature');
  }
  if (cert.unknownCritical.length > 0) {
    throw refuse(CODE.PEER_CERT_INVALID, `peer leaf certificate has unknown critical extensions: ${cert.unknownCritical.join(', ')}`);
  }
  if (now.getTime() < cert.notBefore.getTime()) {
    throw refuse(CODE.PEER_NOT_YET_VALID, `peer certificate is not valid before ${cert.notBefore.toISOString()}`);
  }
  if (now.getTime() > cert.notAfter.getTime()) throw refuse(CODE.PEER_EXPIRED, `peer certificate expired at ${cert.notAfter.toISOString()}`);
  const sans = cert.subjectAltNames;
  const uris = sans?.uris ?? [];
  if (uris.length !== 1) throw refuse(CODE.PEER_NOT_SVID, `peer certificate must have exactly one URI SAN, found ${uris.length}`);
  let parts: ReturnType<typeof parseWorkloadId>;
  try {
    parts = parseWorkloadId(uris[0] as string);
  } catch (err) {
    throw refuse(CODE.PEER_NOT_SVID, `peer certificate URI SAN is not a workload SPIFFE ID: ${(err as Error).message}`);
  }
  if (parts.trustDomain !== options.trustDomain) {
    throw refuse(CODE.PEER_TRUST_DOMAIN, `peer ${parts.id} belongs to trust domain ${parts.trustDomain}, expected ${options.trustDomain}`, {
      spiffeId: parts.id,
    });
  }
  return Object.freeze({ spiffeId: parts.id, trustDomain: parts.trustDomain, namespace: parts.namespace, service: parts.service, notAfter: cert.notAfter });
}

export interface VerifiedChain {
  readonly identity: PeerIdentity;
  /** Leaf first, the bundle root last. */
  readonly path: readonly ParsedCertificate[];
}

export interface ChainCheckOptions {
  readonly now?: Date;
  /** Defaults to the bundle's trust domain. */
  readonly trustDomain?: string;
}

/** Whether `cert`'s signature verifies with `issuerKey` (false for an unknown algorithm). */
export function signedBy(cert: ParsedCertificate, issuerKey: KeyObject): boolean {
  const digest = SIGNATURE_DIGESTS[cert.signatureAlgorithm];
  if (digest === undefined) return false;
  try {
    return verify(digest, cert.tbs, issuerKey, cert.signature);
  } catch {
    return false;
  }
}

export function publicKeyOf(cert: ParsedCertificate): KeyObject {
  return createPublicKey({ key: cert.spki, format: 'der', type: 'spki' });
}

/** Builds and checks the path leaf → intermediates (from `chainPem`) → a root of `bundle`. */
export function verifyChain(chainPem: string, bundle: TrustBundle, options: ChainCheckOptions = {}): VerifiedChain {
  const now = options.now ?? new Date();
  let certs: ParsedCertificate[];
  try {
    certs = parseCertificatesPem(chainPem, 'certificate chain');
  } catch (err) {
    throw new TrellisError(CODE.CHAIN_INVALID, (err as Error).message, { side: 'downstream', cause: err });
  }
  if (certs.length > MAX_CHAIN_LENGTH) throw refuse(CODE.CHAIN_TOO_LONG, `chain holds ${certs.length} certificates (limit ${MAX_CHAIN_LENGTH})`);
  const [leaf] = certs as [ParsedCertificate, ...ParsedCertificate[]];
  const identity = checkLeaf(leaf, { trustDomain: options.trustDomain ?? bundle.trustDomain, now });
  const path = verifyPath(certs, bundle, now, identity.trustDomain);
  return Object.freeze({ identity, path });
}

/**
 * Builds the path from `certs[0]` through issuers among `certs` to a root of `bundle`, and checks every issuer
 * on it: signature, CA flag, keyCertSign, pathLen, validity at `now`, and any SPIFFE trust domain it names.
 * The first certificate itself is not checked here (a leaf gets checkLeaf, a CA its own checks).
 */
export function verifyPath(certs: readonly ParsedCertificate[], bundle: TrustBundle, now: Date, trustDomain: string): readonly ParsedCertificate[] {
  const [first, ...pool] = certs;
  if (first === undefined) throw refuse(CODE.CHAIN_INVALID, 'empty certificate chain');
  const path: ParsedCertificate[] = [first];
  let current = first;
  for (;;) {
    const root = bundle.candidateIssuers(current).find((r) => signedBy(current, publicKeyOf(r)));
    if (root !== undefined) {
      path.push(root);
      break;
    }
    if (path.length >= MAX_CHAIN_LENGTH) throw refuse(CODE.CHAIN_TOO_LONG, `no trusted root within ${MAX_CHAIN_LENGTH} certificates`);
    const next = pool.find((c) => !path.includes(c) && c.subjectName.equals(current.issuerName) && signedBy(current, publicKeyOf(c)));
    if (next === undefined) {
      const anyName = bundle.roots.some((r) => r.subjectName.equals(current.issuerName)) || pool.some((c) => c.subjectName.equals(current.issuerName));
      throw refuse(
        CODE.CHAIN_UNTRUSTED,
        anyName
          ? `the signature of ${describe(current)} does not verify with any issuer of that name (forged or from another trust domain)`
          : `${describe(current)} was not issued by a root of the ${bundle.trustDomain} trust bundle or by a certificate in the chain`,
      );
    }
    path.push(next);
    current = next;
  }

  // Every issuer: a CA, allowed to sign certificates, valid now, and deep enough for the CAs below it.
  const firstIsCa = first.basicConstraints?.ca === true;
  for (let i = 1; i < path.length; i++) {
    const issuer = path[i] as ParsedCertificate;
    const name = describe(issuer);
    if (issuer.basicConstraints?.ca !== true) throw refuse(CODE.CHAIN_ISSUER_NOT_CA, `${name} signed a certificate but is not a CA (a leaf presented as a CA)`);
    if (issuer.keyUsage !== undefined && !issuer.keyUsage.usages.has('keyCertSign')) throw refuse(CODE.CHAIN_ISSUER_NOT_CA, `${name} lacks keyCertSign`);
    if (issuer.unknownCritical.length > 0) throw refuse(CODE.CHAIN_INVALID, `${name} has unknown critical extensions: ${issuer.unknownCritical.join(', ')}`);
    // RFC 5280 6.1.4 (l),(m): pathLen counts the CA certificates between this issuer and the leaf.
    const casBelow = i - 1 + (firstIsCa ? 1 : 0);
    const pathLen = issuer.basicConstraints.pathLen;
    if (pathLen !== undefined && casBelow > pathLen) throw refuse(CODE.CHAIN_PATH_LENGTH, `${name} allows ${pathLen} CA(s) below it, the chain has ${casBelow}`);
    if (now.getTime() < issuer.notBefore.getTime()) throw refuse(CODE.CHAIN_NOT_YET_VALID, `${name} is not valid before ${issuer.notBefore.toISOString()}`);
    if (now.getTime() > issuer.notAfter.getTime()) throw refuse(CODE.CHAIN_EXPIRED, `${name} expired at ${issuer.notAfter.toISOString()}`);
    for (const uri of issuer.subjectAltNames?.uris ?? []) {
      if (!uri.startsWith('spiffe://')) continue;
      const td = safeTrustDomain(uri);
      if (td !== trustDomain) throw refuse(CODE.CHAIN_TRUST_DOMAIN, `${name} belongs to trust domain ${td ?? uri}, not ${trustDomain}`);
    }
  }
  return Object.freeze(path);
}

function safeTrustDomain(uri: string): string | undefined {
  try {
    return parseSpiffeId(uri).trustDomain;
  } catch {
    return undefined;
  }
}

/** "CN=zone-a intermediate (serial 4f..)" or the URI SAN for an empty subject. */
export function describe(cert: ParsedCertificate): string {
  if (!cert.subjectEmpty) {
    const cn = /CN=([^\n,]+)/.exec(nodeSubject(cert))?.[1];
    if (cn !== undefined) return `"${cn}"`;
  }
  const uri = cert.subjectAltNames?.uris[0];
  return uri !== undefined ? uri : `certificate with serial ${cert.serialHex}`;
}

function nodeSubject(cert: ParsedCertificate): string {
  return new NodeX509Certificate(cert.der).subject ?? '';
}
