/**
 * The global control plane's configuration (`trellis control run --mode global`): validated once at the
 * edge, then frozen.
 */
import type { ListenAddress } from '../config.js';
import type { ExportDefault } from '../zone-sync/protocol.js';
import { DEFAULT_ZONE_LEASE_MS } from './global-state.js';

export interface GlobalControlConfig {
  readonly dataDir: string;
  /** `postgres://...` for the PostgreSQL store (several replicas, one leader); the file store otherwise. */
  readonly store: string | undefined;
  readonly caDir: string | undefined;
  /** Mesh-wide TrafficPermission files, sent to every zone. */
  readonly policyDir: string | undefined;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  readonly listen: ListenAddress;
  readonly admin: ListenAddress;
  /** A zone silent this long goes offline and its services leave every catalogue. */
  readonly zoneLeaseMs: number;
  readonly exportDefault: ExportDefault;
  readonly zoneCertTtlMs: number;
}

export const GLOBAL_DEFAULTS = Object.freeze({
  zoneLeaseMs: DEFAULT_ZONE_LEASE_MS,
  exportDefault: 'all' as ExportDefault,
  zoneCertTtlMs: 24 * 3_600_000,
  helloTimeoutMs: 10_000,
  /** Writes run as soon as a change asks (persister.ts); this is how often a failed write is retried. */
  persistIntervalMs: 250,
  maxSessions: 1_024,
});
