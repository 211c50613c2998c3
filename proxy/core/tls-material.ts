/**
 * Turns a workload identity (PEM chain, key, trust bundle) into what node:tls needs, once per identity
 * change: a client SecureContext for new tunnel sessions and server options for `setSecureContext`. Both
 * pin TLS 1.3: the tunnel is ours on both ends, so no older version is ever needed.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { TrellisError } from '../../common/errors.js';
import type { WorkloadIdentity } from '../../api/data-plane.js';
import { CODE } from '../../common/error-codes.js';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { FederatedTrust } from './federated-trust.js';
import { TrustBundle } from '../../ca/bundle.js';
import { parseCertificateDer } from '../../ca/certificate.js';
import { ZoneVerifier } from '../../ca/zone.js';

export interface TlsMaterial {
  readonly options: SecureContextOptions;
  readonly clientContext: SecureContext;
  /** The workload's own certificate, for /certs and the expiry metric. */
  readonly leaf: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly spiffeId: string;
  /** The trust domain of `spiffeId`: the roots of `options.ca` and `clientContext` are its own. */
  readonly trustDomain: string;
  readonly notAfterMs: number;
  /** The federated trust domains, each with contexts that trust its roots alone. */
  readonly federation: FederatedTrust;
  /** The zone a verified peer's leaf proves (ca/zone.ts), against its trust domain's bundle; undefined: unknown. */
  zoneOf(leafDer: Buffer, trustDomain: string): string | undefined;
}

export function buildTlsMaterial(identity: WorkloadIdentity): TlsMaterial {
  const options: SecureContextOptions = Object.freeze({
    cert: identity.certChainPem,
    key: identity.keyPem,
    ca: identity.trustBundlePem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  });
  let clientContext: SecureContext;
  let chain: X509Certificate[];
  try {
    clientContext = createSecureContext(options);
    chain = splitPem(identity.certChainPem).map((pem) => new X509Certificate(pem));
  } catch (err) {
    throw new TrellisError(CODE.PROXY_IDENTITY_INVALID, `the workload identity cannot be used for TLS: ${(err as Error).message}`, { side: 'input', cause: err });
  }
  const leaf = chain[0];
  if (leaf === undefined) throw new TrellisError(CODE.PROXY_IDENTITY_INVALID, 'the workload certificate chain holds no certificate', { side: 'input' });
  const uri = /URI:([^,\s]+)/.exec(leaf.subjectAltName ?? '');
  const spiffeId = uri?.[1] ?? '';
  let trustDomain = '';
  try {
    trustDomain = parseSpiffeId(spiffeId).trustDomain;
  } catch {
    // Not a SPIFFE leaf (some tests and static configs); it then federates with nothing.
  }
  const bundles = identity.federatedBundles ?? {};
  if (trustDomain === '' && Object.keys(bundles).length > 0) {
    throw new TrellisError(CODE.PROXY_FEDERATION_INVALID, 'federated trust bundles need a workload certificate with a SPIFFE ID', { side: 'input' });
  }
  const federation = new FederatedTrust(trustDomain, { cert: options.cert, key: options.key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' }, bundles);
  const ownBundle = trustBundleOrNone(trustDomain, identity.trustBundlePem);
  // One verifier per bundle, kept with this material: a session then costs one signature check.
  const verifiers = new Map<string, ZoneVerifier>();
  return Object.freeze({
    options,
    clientContext,
    leaf,
    chain: Object.freeze(chain),
    spiffeId,
    trustDomain,
    notAfterMs: Date.parse(leaf.validTo),
    federation,
    zoneOf(leafDer: Buffer, peerTrustDomain: string): string | undefined {
      const bundle = peerTrustDomain === trustDomain ? ownBundle : federation.bundle(peerTrustDomain);
      if (bundle === undefined) return undefined;
      let verifier = verifiers.get(peerTrustDomain);
      if (verifier === undefined) verifiers.set(peerTrustDomain, (verifier = new ZoneVerifier(bundle)));
      try {
        return verifier.zoneOf(parseCertificateDer(leafDer));
      } catch {
        return undefined;
      }
    },
  });
}

function trustBundleOrNone(trustDomain: string, pem: string): TrustBundle | undefined {
  if (trustDomain === '') return undefined;
  try {
    return TrustBundle.fromPem(trustDomain, pem);
  } catch {
    return undefined;
  }
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
