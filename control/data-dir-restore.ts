/**
 * A control plane's start, before anything serves: the checks that can fail with nothing written (config,
 * kube config, store), the data dir claimed for this trust domain, zone and root namespace, and the
 * registry with agents' registrations restored from the store (universal mode).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { InputError, describeError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import type { Logger } from '../common/log.js';
import { CertificateLineage } from './certificate-lineage.js';
import { configConflicts, type ControlPlaneConfig } from './config.js';
import { FileStore } from './file-store.js';
import { claimDataDir } from './identity-file.js';
import { loadKubeConfig } from './kubernetes/kube-config.js';
import { ControlMetrics } from './metrics.js';
import { ServiceRegistry } from './registry.js';

/** Checks that can fail with nothing written: the config, the kube config, the store; then claims the data dir. */
export async function openDataDir(config: ControlPlaneConfig): Promise<{ kubeConfig: KubeConfig | undefined; store: FileStore }> {
  const conflicts = configConflicts(config);
  if (conflicts.length > 0) throw new InputError(CODE.CONFIG_INVALID, conflicts.join('\n'));
  // Before anything is written: a kubeconfig that cannot be read is bad input, not a half-made data dir.
  const kubeConfig = config.mode === 'kubernetes' && config.kubernetes !== undefined ? loadKubeConfig(config.kubernetes) : undefined;
  const store = await FileStore.open(config.dataDir);
  await store.check();
  await claimDataDir(config.dataDir, dataDirIdentity(config));
  return { kubeConfig, store };
}

export function dataDirIdentity(config: ControlPlaneConfig): { trustDomain: string; zone: string; rootNamespace: string } {
  return { trustDomain: config.trustDomain, zone: config.zone, rootNamespace: config.rootNamespace };
}

/** The registry and the metrics that count it; in universal mode, agents' registrations restored from the store. */
export async function restoreRegistry(config: ControlPlaneConfig, store: FileStore, fromStore: boolean, metricsRegistry: Registry, log: Logger): Promise<{ registry: ServiceRegistry; metrics: ControlMetrics; lineage: CertificateLineage }> {
  const registry: ServiceRegistry = new ServiceRegistry({
    zone: config.zone,
    disconnectGraceMs: config.disconnectGraceMs,
    startupGraceMs: config.startupGraceMs,
    leaseMs: config.instanceLeaseMs,
    // Only agents' registrations are stored; in Kubernetes mode the feed's instances never lapse.
    onDropped: (r, why) => {
      if (why === 'lease') {
        metrics.instancesLapsed.inc();
        log.info({ instanceId: r.instanceId, service: r.service, namespace: r.namespace }, 'instance removed: its agent did not come back within the lease');
      }
      void store.deleteRegistration(r.instanceId).catch((err: unknown) => log.error({ err: describeError(err), instanceId: r.instanceId }, 'cannot delete a lapsed registration from the store'));
    },
  });
  const metrics = new ControlMetrics(metricsRegistry, () => registry.counts());
  const lineage = new CertificateLineage();
  if (fromStore) {
    const stored = await store.listRegistrations((file, reason) => {
      metrics.storeCorrupt.inc();
      log.error({ file, reason }, 'damaged registration file skipped (left as found; the agent registers again when it reconnects)');
    });
    for (const r of stored) if (r.owner !== undefined) lineage.remember(r.owner);
    registry.restore(stored);
  }
  return { registry, metrics, lineage };
}
