/**
 * Who may pass a zone ingress. Every caller is a verified workload of our trust domain (the TLS layer and
 * checkPeer see to that); on top, the operator can refuse identities outright (`--refuse-identity`) and
 * admit only some zones (`--admit-zone`, default every zone).
 *
 * The caller's zone comes from its certificate chain: with one mesh root, each zone's workloads are issued
 * by that zone's intermediate, which the global control plane names `Trellis zone <zone>`
 * (control/global/global-server.ts). The leaf's issuer name is trustworthy once the chain verified: it must
 * equal the subject of the CA that signed it, and only the global's root signs zone intermediates, each
 * with its own zone's name; a zone's intermediate cannot issue a leaf that names another zone's. A caller
 * whose chain names no zone (a zone with its own PKI, a single-zone mesh) has zone `unknown`, admitted only
 * when every zone is.
 */
import type { X509Certificate } from 'node:crypto';

export const UNKNOWN_ZONE = 'unknown';
const ZONE_ISSUER = /(?:^|\n)CN=Trellis zone ([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)(?:\n|$)/;

export interface CallerRules {
  /** Zones whose callers may pass; `'*'` admits every verified caller. */
  readonly admitZones: readonly string[] | '*';
  /** SPIFFE IDs refused whatever their zone. */
  readonly refuseIdentities: readonly string[];
}

export type CallerVerdict = 'admitted' | 'zone-not-admitted' | 'identity-refused';

/** The zone a verified leaf was issued in, from its issuer's name; `unknown` when it names none. */
export function callerZone(leaf: X509Certificate | undefined): string {
  const m = leaf === undefined ? null : ZONE_ISSUER.exec(leaf.issuer);
  return m === null ? UNKNOWN_ZONE : (m[1] as string);
}

export function judgeCaller(rules: CallerRules, spiffeId: string, zone: string): CallerVerdict {
  if (rules.refuseIdentities.includes(spiffeId)) return 'identity-refused';
  if (rules.admitZones !== '*' && !rules.admitZones.includes(zone)) return 'zone-not-admitted';
  return 'admitted';
}
