/**
 * Who may pass a zone ingress. Every caller is a verified workload of our trust domain (the TLS layer and
 * checkPeer see to that); on top, the operator can refuse identities outright (`--refuse-identity`) and
 * admit only some zones (`--admit-zone`, default every zone).
 *
 * The caller's zone is the one its certificate chain proves, by the same rule as a sidecar's tunnel port
 * (ca/zone.ts through TlsMaterial.zoneOf: the zone its signing intermediate names, checked against our
 * bundle). A caller whose zone cannot be proven (a zone with its own PKI, an intermediate made before
 * zones were written, a single-zone mesh) has zone `unknown`, admitted only when every zone is.
 */
export const UNKNOWN_ZONE = 'unknown';

export interface CallerRules {
  /** Zones whose callers may pass; `'*'` admits every verified caller. */
  readonly admitZones: readonly string[] | '*';
  /** SPIFFE IDs refused whatever their zone. */
  readonly refuseIdentities: readonly string[];
}

export type CallerVerdict = 'admitted' | 'zone-not-admitted' | 'identity-refused';

export function judgeCaller(rules: CallerRules, spiffeId: string, zone: string): CallerVerdict {
  if (rules.refuseIdentities.includes(spiffeId)) return 'identity-refused';
  if (rules.admitZones !== '*' && !rules.admitZones.includes(zone)) return 'zone-not-admitted';
  return 'admitted';
}
