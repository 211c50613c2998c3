/**
 * Trust across trust domains (multi-zone meshes whose zones have different roots, docs/architecture.md
 * "Zones"). node:tls verifies a peer's chain against one pool: the mesh roots plus every federated trust
 * domain's roots. That alone would let a chain of trust domain B carry a SPIFFE ID of trust domain A, so
 * once a handshake is done the chain is verified again against the roots of the trust domain its leaf
 * names, and only those: the mesh roots for our own trust domain, trust domain B's bundle for B. Without
 * federated bundles the pool is the mesh roots alone and this second check is skipped (nothing to confuse).
 */
import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { TrustBundle } from '../../ca/bundle.js';
import { MAX_CHAIN_LENGTH, verifyChain } from '../../ca/verify.js';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';

export interface FederatedTrust {
  /** The mesh's own roots, as a bundle of our trust domain. */
  readonly mesh: TrustBundle;
  /** Federated trust domain → its roots. Never holds our own trust domain. */
  readonly federated: ReadonlyMap<string, TrustBundle>;
  /** Every root, PEM: what node:tls is given as `ca`. */
  readonly allRootsPem: string;
}

/**
 * Parses the federated bundles once per identity or config change; `undefined` when there are none.
 * Throws TRELLIS_PROXY_IDENTITY_INVALID for a bundle that is not PEM CA certificates or names our own trust domain.
 */
export function buildFederatedTrust(meshTrustDomain: string, meshRootsPem: string, bundles: Readonly<Record<string, string>> | undefined): FederatedTrust | undefined {
  const entries = Object.entries(bundles ?? {});
  if (entries.length === 0) return undefined;
  try {
    const federated = new Map<string, TrustBundle>();
    for (const [td, pem] of entries) {
      if (td === meshTrustDomain) throw new Error(`a federated bundle names the mesh's own trust domain ${td}`);
      federated.set(td, TrustBundle.fromPem(td, pem));
    }
    return Object.freeze({ mesh: TrustBundle.fromPem(meshTrustDomain, meshRootsPem), federated, allRootsPem: [meshRootsPem, ...entries.map(([, pem]) => pem)].join('\n') });
  } catch (err) {
    throw new TrellisError(CODE.PROXY_IDENTITY_INVALID, `federated trust bundles cannot be used: ${(err as Error).message}`, { side: 'input', cause: err });
  }
}

/** The trust domain a leaf's SPIFFE ID names, or undefined (no SPIFFE URI: the leaf check refuses it). */
export function leafTrustDomain(cert: X509Certificate): string | undefined {
  return /(?:^|,\s*)URI:spiffe:\/\/([^/,\s]+)/.exec(cert.subjectAltName ?? '')?.[1];
}

/**
 * Verifies the peer's presented chain against the bundle of `trustDomain` only (our own or a federated
 * one); throws the CA module's TRELLIS_CHAIN_* / TRELLIS_PEER_* error when it does not chain there.
 */
export function verifyAnchoredIn(socket: TLSSocket, trust: FederatedTrust, meshTrustDomain: string, trustDomain: string): void {
  const bundle = trustDomain === meshTrustDomain ? trust.mesh : trust.federated.get(trustDomain);
  if (bundle === undefined) throw new TrellisError(CODE.PEER_TRUST_DOMAIN, `peer trust domain ${trustDomain} is neither ${meshTrustDomain} nor federated`, { side: 'downstream' });
  verifyChain(peerChainPem(socket), bundle, { trustDomain });
}

/** The chain the peer sent (and node:tls completed), leaf first, as PEM; bounded by the CA module's chain limit. */
function peerChainPem(socket: TLSSocket): string {
  const pems: string[] = [];
  const seen = new Set<DetailedPeerCertificate>();
  let current: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true) as DetailedPeerCertificate;
  while (current?.raw !== undefined && !seen.has(current) && pems.length <= MAX_CHAIN_LENGTH) {
    seen.add(current);
    pems.push(new X509Certificate(current.raw).toString());
    current = current.issuerCertificate;
  }
  return pems.join('\n');
}
