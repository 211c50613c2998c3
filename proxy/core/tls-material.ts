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
import { buildFederatedTrust, leafTrustDomain, type FederatedTrust } from './federated-trust.js';

export interface TlsMaterial {
  readonly options: SecureContextOptions;
  readonly clientContext: SecureContext;
  /** The workload's own certificate, for /certs and the expiry metric. */
  readonly leaf: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly spiffeId: string;
  readonly notAfterMs: number;
  /** Present when trust domains are federated: peers are then checked against their own trust domain's roots. */
  readonly federation: FederatedTrust | undefined;
}

export function buildTlsMaterial(identity: WorkloadIdentity): TlsMaterial {
  let chain: X509Certificate[];
  try {
    chain = splitPem(identity.certChainPem).map((pem) => new X509Certificate(pem));
  } catch (err) {
    throw new TrellisError(CODE.PROXY_IDENTITY_INVALID, `the workload identity cannot be used for TLS: ${(err as Error).message}`, { side: 'input', cause: err });
  }
  const leaf = chain[0];
  if (leaf === undefined) throw new TrellisError(CODE.PROXY_IDENTITY_INVALID, 'the workload certificate chain holds no certificate', { side: 'input' });
  const federation = buildFederatedTrust(leafTrustDomain(leaf) ?? '', identity.trustBundlePem, identity.federatedBundles);
  const options: SecureContextOptions = Object.freeze({
    cert: identity.certChainPem,
    key: identity.keyPem,
    // node:tls takes one pool; checkPeer then holds each peer to its own trust domain's roots (federated-trust.ts).
    ca: federation?.allRootsPem ?? identity.trustBundlePem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  });
  let clientContext: SecureContext;
  try {
    clientContext = createSecureContext(options);
  } catch (err) {
    throw new TrellisError(CODE.PROXY_IDENTITY_INVALID, `the workload identity cannot be used for TLS: ${(err as Error).message}`, { side: 'input', cause: err });
  }
  const uri = /URI:([^,\s]+)/.exec(leaf.subjectAltName ?? '');
  return Object.freeze({
    options,
    clientContext,
    leaf,
    chain: Object.freeze(chain),
    spiffeId: uri?.[1] ?? '',
    notAfterMs: Date.parse(leaf.validTo),
    federation,
  });
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
