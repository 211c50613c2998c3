/**
 * The control plane's configuration: validated once at the edge (`trellis control run`), then frozen.
 */
import { DEFAULT_FAILED_BOOTSTRAP_LIMIT, type FailedBootstrapLimit } from './bootstrap-limiter.js';
import { DEFAULT_CONTROL_ADMIN_PORT, DEFAULT_CONTROL_PORT } from '../api/control-protocol.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { DEFAULT_INSTANCE_LIMITS, type InstanceLimits } from './instance-ownership.js';
import type { KubeApiAccess } from './kubernetes/kube-config.js';
import type { ZoneGlobalConfig } from './zone-sync/attach.js';
import { CONTROL_LIMITS } from './limits.js';

/**
 * universal: agents register their endpoints, VMs join with join tokens, policy from `--policy DIR`.
 * kubernetes: identities by TokenReview (join tokens still work, for VMs), endpoints from Services,
 * EndpointSlices and Pods, policy from TrafficPermission resources.
 */
export type ControlPlaneMode = 'universal' | 'kubernetes';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface ControlPlaneConfig {
  readonly mode: ControlPlaneMode;
  /** How to reach the Kubernetes API; set exactly when `mode` is kubernetes. */
  readonly kubernetes?: KubeApiAccess;
  readonly dataDir: string;
  /** Operator-supplied root CA as `trellis ca init` writes it (`ca.crt`, `ca.key`, `bundle.pem`); otherwise a root is made in the data dir. */
  readonly caDir: string | undefined;
  /** Universal mode only: in Kubernetes mode policy comes from TrafficPermission resources. */
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
  /**
   * A registration whose agent's watch has been closed this long is removed (and deleted from the store);
   * after a restart, stored registrations get this long (at least `startupGraceMs`) to be reclaimed.
   */
  readonly instanceLeaseMs: number;
  /** How many instances one workload (certificate) and one service identity may register (universal mode). */
  readonly instanceLimits: InstanceLimits;
  readonly pingIntervalMs: number;
  readonly maxConnections: number;
  readonly maxWatchBufferBytes: number;
  /** Refused bootstrap attempts per source address before 429 (default `CONTROL_DEFAULTS.failedBootstrapLimit`). */
  readonly failedBootstrapLimit?: FailedBootstrapLimit;
  /**
   * How often the token records are read again for revocations made offline (`trellis token revoke
   * --data-dir`) and for revoked certificates that expired; a revocation through the API is pushed at once.
   */
  readonly revocationRefreshMs?: number;
  /** `--global URL`: this zone syncs with a global control plane (control/zone-sync/, docs "Zones"). */
  readonly global?: ZoneGlobalConfig;
}

export const CONTROL_DEFAULTS = Object.freeze({
  mode: 'universal' as ControlPlaneMode,
  trustDomain: 'trellis.local',
  zone: 'default',
  rootNamespace: DEFAULT_ROOT_NAMESPACE,
  listen: Object.freeze({ host: '0.0.0.0', port: DEFAULT_CONTROL_PORT }),
  admin: Object.freeze({ host: '127.0.0.1', port: DEFAULT_CONTROL_ADMIN_PORT }),
  workloadTtlMs: CONTROL_LIMITS.workloadTtlMs,
  disconnectGraceMs: CONTROL_LIMITS.disconnectGraceMs,
  startupGraceMs: CONTROL_LIMITS.startupGraceMs,
  instanceLeaseMs: CONTROL_LIMITS.instanceLeaseMs,
  instanceLimits: DEFAULT_INSTANCE_LIMITS,
  pingIntervalMs: CONTROL_LIMITS.pingIntervalMs,
  maxConnections: CONTROL_LIMITS.maxConnections,
  maxWatchBufferBytes: CONTROL_LIMITS.maxWatchBufferBytes,
  failedBootstrapLimit: DEFAULT_FAILED_BOOTSTRAP_LIMIT,
  revocationRefreshMs: CONTROL_LIMITS.revocationRefreshMs,
});

/** What cannot hold together in a config, whoever built it (the CLI reports these with its own). */
export function configConflicts(config: Pick<ControlPlaneConfig, 'mode' | 'kubernetes' | 'policyDir'>): string[] {
  const problems: string[] = [];
  if (config.mode === 'kubernetes') {
    if (config.kubernetes === undefined) problems.push('--mode kubernetes needs the Kubernetes API: run in a pod (KUBERNETES_SERVICE_HOST/PORT set), or pass --kubeconfig FILE (or set $KUBECONFIG)');
    if (config.policyDir !== undefined) problems.push('--policy: in kubernetes mode policy comes from TrafficPermission resources (kubectl apply them), not from a directory');
  } else if (config.kubernetes !== undefined) {
    problems.push('--kubeconfig and --kube-context need --mode kubernetes');
  }
  return problems;
}
