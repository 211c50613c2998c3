/**
 * The zone a workload certificate was issued in, proven by its chain.
 *
 * Each zone control plane signs its workloads with its own intermediate, and the intermediate names its
 * zone (`OID.trellisZone`, written by whoever made it: the global, under the mesh root, or the zone control
 * plane under its own root); a zone control plane holds only its intermediate's key, so it cannot issue
 * under another zone's name. A tunnel server sees only the peer's leaf (node:tls hides the rest of the
 * chain server-side), so such an intermediate also embeds itself and its chain in every leaf it signs
 * (`OID.trellisIssuerChain`). That copy proves nothing by itself: `zoneOfLeaf` accepts the zone only when
 * the leaf's signature verifies with the embedded intermediate's key and the intermediate chains to a root of
 * the trust domain's bundle (ca/verify.ts `verifyPath`). Anything else (no copy, a copy that does not sign
 * the leaf or does not chain, an intermediate without a zone, one made before zones were written) is "zone
 * unknown", which matches only rules that name no zone.
 */
import { parseCertificateDer, type ParsedCertificate } from './certificate.js';
import type { TrustBundle } from './bundle.js';
import { MAX_CHAIN_LENGTH, verifyPath } from './verify.js';

/** The zone of the intermediate that signed `leaf`, verified against `bundle`; undefined when it cannot be proven. */
export function zoneOfLeaf(leaf: ParsedCertificate, bundle: TrustBundle, now: Date = new Date()): string | undefined {
  const embedded = leaf.issuerChain;
  if (embedded === undefined || embedded.length === 0 || embedded.length > MAX_CHAIN_LENGTH - 2) return undefined;
  let chain: ParsedCertificate[];
  try {
    chain = embedded.map((der) => parseCertificateDer(der));
  } catch {
    return undefined;
  }
  const issuer = chain[0] as ParsedCertificate;
  if (issuer.zone === undefined) return undefined;
  let path: readonly ParsedCertificate[];
  try {
    path = verifyPath([leaf, ...chain], bundle, now, bundle.trustDomain);
  } catch {
    return undefined;
  }
  // The zone is the direct signer's, and only an intermediate's: a root (path of two) names none.
  const signer = path[1];
  return path.length >= 3 && signer !== undefined && !bundle.contains(signer) ? signer.zone : undefined;
}
