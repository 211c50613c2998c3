/**
 * The agent's limits in one schema (common/limit-schema.ts): its flags (`--health-interval`,
 * `--drain-grace`) are checked against these bounds at the edge, and the status port and the app-probe
 * file take their defaults from here. The proxy it runs has its own (proxy/core/limits.ts).
 */
import { ADMIN_HTTP_LIMIT_SCHEMA } from '../common/admin-http.js';
import { defineLimits, limitDefaults } from '../common/limit-schema.js';

export const AGENT_LIMIT_SCHEMA = defineLimits({
  healthIntervalMs: { default: 5_000, min: 100, max: 3_600_000, unit: 'ms', doc: 'between health checks of the first app port (`--health-interval`)' },
  healthTimeoutMs: { default: 2_000, min: 100, max: 60_000, unit: 'ms', doc: 'one health check of the app must answer within this' },
  // At least the control plane's minimum spacing of one instance's summaries (api/golden-summary.ts).
  summaryIntervalMs: { default: 10_000, min: 2_000, max: 300_000, unit: 'ms', doc: 'between golden-metrics summaries to the control plane (`--summary-interval`)' },
  drainGraceMs: { default: 10_000, min: 1, max: 3_600_000, unit: 'ms', doc: 'on SIGTERM, how long open connections may finish (`--drain-grace`)' },
  // The control plane takes at most this many ports per registration (control/registration.ts).
  maxAppPorts: { default: 64, min: 1, max: 64, unit: 'count', doc: '`--app-port` flags per agent' },
});

/** The status port the kubelet probes (`--status`): the admin listener's limits, more connections, probe runs. */
export const STATUS_LIMIT_SCHEMA = defineLimits({
  ...ADMIN_HTTP_LIMIT_SCHEMA,
  maxConnections: { default: 256, min: 1, max: 65_536, unit: 'count', doc: 'concurrent connections to the status port' },
  // Identical concurrent probes share one run.
  maxProbesInFlight: { default: 64, min: 1, max: 4_096, unit: 'count', doc: 'app probe runs in flight at once; beyond, 503' },
  // Nothing is expected in it.
  maxQuitBodyBytes: { default: 1024, min: 0, max: 65_536, unit: 'bytes', doc: 'bytes of a /quitquitquit request body read before answering' },
});

/** What an `--app-probes` file may hold. */
export const APP_PROBE_LIMIT_SCHEMA = defineLimits({
  // The annotation it comes from is bounded by the 256 KiB of all of a pod's annotations.
  fileBytes: { default: 256 * 1024, min: 1024, max: 256 * 1024, unit: 'bytes', doc: 'size of the `--app-probes` file' },
  probes: { default: 512, min: 1, max: 4_096, unit: 'count', doc: 'probes in the file' },
  headers: { default: 32, min: 0, max: 256, unit: 'count', doc: 'headers of one HTTP probe' },
  headerBytes: { default: 4 * 1024, min: 0, max: 65_536, unit: 'bytes', doc: 'header bytes of one HTTP probe' },
  pathBytes: { default: 2 * 1024, min: 1, max: 65_536, unit: 'bytes', doc: 'path length of one HTTP probe' },
  // The kubelet allows any timeout; a probe answer that takes longer than this is no answer.
  maxTimeoutSeconds: { default: 300, min: 1, max: 3_600, unit: 's', doc: 'longest probe timeout honoured' },
});

export const AGENT_LIMITS = limitDefaults(AGENT_LIMIT_SCHEMA);
export const STATUS_LIMITS = limitDefaults(STATUS_LIMIT_SCHEMA);
export const APP_PROBE_LIMITS = limitDefaults(APP_PROBE_LIMIT_SCHEMA);
