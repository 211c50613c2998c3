/**
 * The zone a workload certificate was issued in, proven by its chain.
 *
 * Each zone control plane signs its workloads with its own intermediate, and the intermediate names its
 * zone (`OID.trellisZone`, written by whoever made it: the global, under the mesh root, or the zone control
 * plane under its own root); a zone control plane holds only its intermediate's key, so it cannot issue
 * under another zone's name. A tunnel server sees only the peer's leaf (node:tls hides the rest of the
 * chain server-side), so such an intermediate also embeds itself and its chain in every leaf it signs
 * (`OID.trellisIssuerChain`). That copy proves nothing by itself: the zone is accepted only when the leaf's
 * signature verifies with the embedded intermediate's key and the intermediate chains to a root of the
 * trust domain's bundle (ca/verify.ts `verifyPath`). Anything else (no copy, a copy that does not sign the
 * leaf or does not chain, an intermediate without a zone, one made before zones were written, a root
 * signing leaves itself) is "zone unknown", which matches only rules that name no zone.
 */
import type { KeyObject } from 'node:crypto';
import { parseCertificateDer, type ParsedCertificate } from './certificate.js';
import type { TrustBundle } from './bundle.js';
import { MAX_CHAIN_LENGTH, publicKeyOf, signedBy, verifyPath } from './verify.js';

/** Embedded chains verified against one bundle, kept so a session costs one signature check, not three. */
const MAX_CACHED_ISSUERS = 256;

interface VerifiedIssuer {
  readonly zone: string;
  readonly subjectName: Buffer;
  readonly key: KeyObject;
  /** The window in which every certificate of the path above the leaf is valid. */
  readonly validFrom: number;
  readonly validTo: number;
}

/** Proves leaves' zones against one trust bundle; build a new one when the bundle changes. */
export class ZoneVerifier {
  private readonly issuers = new Map<string, VerifiedIssuer>();

  constructor(readonly bundle: TrustBundle) {}

  /** The zone of the intermediate that signed `leaf`; undefined when it cannot be proven. */
  zoneOf(leaf: ParsedCertificate, now: Date = new Date()): string | undefined {
    const embedded = leaf.issuerChain;
    if (embedded === undefined || embedded.length === 0 || embedded.length > MAX_CHAIN_LENGTH - 2) return undefined;
    const cacheKey = embedded.map((der) => der.toString('base64')).join('.');
    const cached = this.issuers.get(cacheKey);
    if (cached === undefined) {
      const verified = verifyIssuer(leaf, embedded, this.bundle, now);
      // Only successes are kept: a failure may be the leaf's alone (a forged leaf carrying a real zone's
      // chain), and remembering it would make that zone's genuine callers "unknown".
      if (verified !== null) this.remember(cacheKey, verified);
      return verified?.zone;
    }
    const issuer = cached;
    const t = now.getTime();
    if (t < issuer.validFrom || t > issuer.validTo) return undefined;
    return leaf.issuerName.equals(issuer.subjectName) && signedBy(leaf, issuer.key) ? issuer.zone : undefined;
  }

  private remember(key: string, issuer: VerifiedIssuer): void {
    if (this.issuers.size >= MAX_CACHED_ISSUERS) this.issuers.delete(this.issuers.keys().next().value as string);
    this.issuers.set(key, issuer);
  }
}

/** The full check, once per embedded chain: the leaf signed by its first certificate, which chains to the bundle. */
function verifyIssuer(leaf: ParsedCertificate, embedded: readonly Buffer[], bundle: TrustBundle, now: Date): VerifiedIssuer | null {
  let chain: ParsedCertificate[];
  try {
    chain = embedded.map((der) => parseCertificateDer(der));
  } catch {
    return null;
  }
  const first = chain[0] as ParsedCertificate;
  if (first.zone === undefined) return null;
  let path: readonly ParsedCertificate[];
  try {
    path = verifyPath([leaf, ...chain], bundle, now, bundle.trustDomain);
  } catch {
    return null;
  }
  // The zone is the direct signer's, and only an intermediate's: a root (path of two) names none.
  const signer = path[1];
  if (path.length < 3 || signer === undefined || !signer.der.equals(first.der) || bundle.contains(signer)) return null;
  const above = path.slice(1);
  return Object.freeze({
    zone: first.zone,
    subjectName: first.subjectName,
    key: publicKeyOf(first),
    validFrom: Math.max(...above.map((c) => c.notBefore.getTime())),
    validTo: Math.min(...above.map((c) => c.notAfter.getTime())),
  });
}

/** One-off form of `ZoneVerifier#zoneOf` (tools and tests). */
export function zoneOfLeaf(leaf: ParsedCertificate, bundle: TrustBundle, now: Date = new Date()): string | undefined {
  return new ZoneVerifier(bundle).zoneOf(leaf, now);
}
