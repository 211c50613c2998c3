/**
 * The control plane's configuration: validated once at the edge (`trellis control run`), then frozen.
 */
import { DEFAULT_CONTROL_ADMIN_PORT, DEFAULT_CONTROL_PORT } from '../api/control-protocol.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface ControlPlaneConfig {
  readonly dataDir: string;
  /** Operator-supplied root CA as `trellis ca init` writes it (`ca.crt`, `ca.key`, `bundle.pem`); otherwise a root is made in the data dir. */
  readonly caDir: string | undefined;
  readonly policyDir: string | undefined;
  readonly trustDomain: string;
  readonly zone: string;
  readonly rootNamespace: string;
  readonly listen: ListenAddress;
  readonly admin: ListenAddress;
  readonly workloadTtlMs: number;
  /** An agent's endpoint stays healthy this long after its watch closes (a reconnect blip). */
  readonly disconnectGraceMs: number;
  /** After a restart, restored endpoints stay as they were this long, while agents reconnect. */
  readonly startupGraceMs: number;
  /** A registration whose agent has been gone this long is deleted. */
  readonly expireAfterMs: number;
  readonly pingIntervalMs: number;
  readonly maxConnections: number;
  readonly maxWatchBufferBytes: number;
}

export const CONTROL_DEFAULTS = Object.freeze({
  trustDomain: 'trellis.local',
  zone: 'default',
  rootNamespace: DEFAULT_ROOT_NAMESPACE,
  listen: Object.freeze({ host: '0.0.0.0', port: DEFAULT_CONTROL_PORT }),
  admin: Object.freeze({ host: '127.0.0.1', port: DEFAULT_CONTROL_ADMIN_PORT }),
  workloadTtlMs: 24 * 3_600_000,
  disconnectGraceMs: 3_000,
  startupGraceMs: 30_000,
  expireAfterMs: 3_600_000,
  pingIntervalMs: 10_000,
  maxConnections: 20_000,
  maxWatchBufferBytes: 4 * 1024 * 1024,
});
