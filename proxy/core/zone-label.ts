/**
 * The caller's zone as a metric label, from a bounded set: the zone its certificate proves (ca/zone.ts),
 * `unknown` when it proves none, and `other` past the first MAX_ZONE_LABELS distinct zones. Zones under our
 * root are as many as the global made, but a federated trust domain's CA can name as many zones as it likes,
 * and every label value is a time series kept for the life of the process.
 */

export const MAX_ZONE_LABELS = 64;

const seen = new Set<string>();

export function zoneLabel(zone: string | undefined): string {
  if (zone === undefined) return 'unknown';
  if (seen.has(zone)) return zone;
  if (seen.size >= MAX_ZONE_LABELS) return 'other';
  seen.add(zone);
  return zone;
}
