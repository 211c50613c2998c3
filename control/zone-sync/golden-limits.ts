/** The bounds of a zone's golden-metrics report to the global (golden-upload.ts sends it, control/global/zone-golden.ts checks it). */
export const ZONE_GOLDEN_LIMITS = Object.freeze({
  /** Pairs in one zone's report (the zone sends its busiest; the rest are counted in `truncated`). */
  maxEdges: 500,
  /** One report's body: 500 pairs of ~300 bytes fit with room to spare. */
  maxBodyBytes: 256 * 1024,
  /** Zones remembered (each is a certified zone, so this only bounds a mesh of very many zones). */
  maxZones: 1_000,
  /** One report per zone per this long at most. */
  minIntervalMs: 5_000,
  /** A report older than this is left out of the merged graph (a zone sends every 30 s). */
  maxAgeMs: 2 * 60_000,
  maxCount: 1e12,
});

/** How often a zone sends its edge view by default. */
export const ZONE_GOLDEN_INTERVAL_MS = 30_000;
