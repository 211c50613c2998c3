/**
 * The control plane's limits in one schema (common/limit-schema.ts): `trellis control run`'s duration
 * flags are checked against these bounds at the edge, and the defaults of its config, of instance
 * ownership and of registrations come from here.
 */
import { defineLimits, limitDefaults } from '../common/limit-schema.js';

const HOUR_MS = 3_600_000;

export const CONTROL_LIMIT_SCHEMA = defineLimits({
  // The CA refuses leaves over 30 days unless configured otherwise.
  workloadTtlMs: { default: 24 * HOUR_MS, min: 1_000, max: 30 * 24 * HOUR_MS, unit: 'ms', doc: 'lifetime of a workload certificate (`--workload-ttl`)' },
  disconnectGraceMs: { default: 3_000, min: 1, max: HOUR_MS, unit: 'ms', doc: "an agent's endpoint stays healthy this long after its watch closes (`--disconnect-grace`)" },
  startupGraceMs: { default: 30_000, min: 1, max: HOUR_MS, unit: 'ms', doc: 'after a restart, restored endpoints stay as they were this long (`--startup-grace`)' },
  instanceLeaseMs: { default: 60_000, min: 1, max: 24 * HOUR_MS, unit: 'ms', doc: "a registration whose agent's watch is closed this long is removed (`--instance-lease`)" },
  pingIntervalMs: { default: 10_000, min: 100, max: 10 * 60_000, unit: 'ms', doc: 'each watch is pinged this often (`--ping-interval`)' },
  maxConnections: { default: 20_000, min: 1, max: 1_000_000, unit: 'count', doc: 'concurrent connections to the API port' },
  maxWatchBufferBytes: { default: 4 * 1024 * 1024, min: 64 * 1024, max: 1024 * 1024 * 1024, unit: 'bytes', doc: 'bytes queued for one slow watcher before it is cut' },
  revocationRefreshMs: { default: 30_000, min: 1_000, max: HOUR_MS, unit: 'ms', doc: 'token records are re-read this often for revocations made offline' },
  instancesPerWorkload: { default: 8, min: 1, max: 1_024, unit: 'count', doc: 'instances one workload (a certificate and its renewals) may register' },
  instancesPerService: { default: 256, min: 1, max: 100_000, unit: 'count', doc: 'instances one service identity may register, across its workloads' },
  // The agent caps its --app-port flags at the same number (agent/limits.ts).
  registrationPorts: { default: 64, min: 1, max: 64, unit: 'count', doc: 'ports in one registration' },
  registrationUpstreams: { default: 1_024, min: 1, max: 65_536, unit: 'count', doc: 'upstreams in one registration' },
  registrationDetailBytes: { default: 512, min: 0, max: 4_096, unit: 'bytes', doc: "characters of a registration's health detail kept" },
});

export const CONTROL_LIMITS = limitDefaults(CONTROL_LIMIT_SCHEMA);
