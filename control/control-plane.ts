/**
 * A zone control plane, assembled: store, CAs, join tokens, registry, policy, watch hub, the HTTPS API
 * and the admin listener. `startControlPlane` returns once both listeners accept connections; the order
 * below matters: the store is checked before anything is created (a damaged file stops the start with its
 * name, nothing written), and the policy is loaded before agents can connect (no one gets an empty policy
 * by accident during start-up).
 *
 * Two modes (`config.mode`). Universal: endpoints are agents' registrations, restored from the store
 * after a restart; policy from a directory. Kubernetes: the kube config is loaded before anything else
 * (a bad one stops the start with nothing written); identities come from TokenReview (asked before
 * join tokens, which VMs may still use), endpoints from Services, EndpointSlices and Pods (the API is
 * the authority, so nothing is restored from the store and agents' registrations add no endpoints),
 * and policy from TrafficPermission resources, listed and valid before the API listener opens.
 *
 * With an operator CA (`--ca-dir`), its `bundle.pem` is watched once the listeners are open: a valid new
 * bundle becomes the one the API trusts and serves, issuance hands out, and agents get as a delta (root
 * rotation); an invalid one is logged, counted and ignored.
 */
import { once } from 'node:events';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server as HttpsServer } from 'node:https';
import type { Server as HttpServer } from 'node:http';
import { Registry } from 'prom-client';
import { CONTROL_PLANE_SERVICE, type RevokedSerial } from '../api/control-protocol.js';
import type { CertificateAuthority } from '../ca/authority.js';
import { CA_FILES } from '../ca/store.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import { InputError, describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { createAdminServer } from './admin-server.js';
import { createApiServer } from './api-server.js';
import { setUpZoneCas } from './ca-setup.js';
import type { BootstrapAuthenticator } from './authenticator.js';
import { FailedBootstrapLimiter } from './bootstrap-limiter.js';
import { CONTROL_DEFAULTS, configConflicts, type ControlPlaneConfig, type ControlPlaneMode } from './config.js';
import { FileStore } from './file-store.js';
import { claimDataDir } from './identity-file.js';
import { IdentityIssuer } from './identity-issuer.js';
import { ControlMetrics } from './metrics.js';
import { createKubernetesMode, type KubernetesMode } from './kubernetes/kubernetes-mode.js';
import { loadKubeConfig } from './kubernetes/kube-config.js';
import type { KubernetesPolicyFeed } from './kubernetes/policy-feed.js';
import { PolicySource, type PolicyState } from './policy-source.js';
import { ServiceRegistry } from './registry.js';
import { CertificateLineage } from './certificate-lineage.js';
import { TokenService } from './token-service.js';
import { TrustBundleWatch } from './trust-bundle-watch.js';
import { WatchHub } from './watch-hub.js';
import { CODE } from '../common/error-codes.js';

/** The policy in force: a watched directory (universal mode) or TrafficPermission resources (Kubernetes mode). */
export type ControlPolicy = PolicySource | KubernetesPolicyFeed;

export interface RunningControlPlane {
  readonly mode: ControlPlaneMode;
  readonly apiAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  /** The bundle in force (it changes when the operator's CA dir's bundle.pem does). */
  readonly trustBundlePem: string;
  readonly registry: ServiceRegistry;
  readonly hub: WatchHub;
  readonly policy: ControlPolicy;
  readonly metrics: Registry;
  close(): Promise<void>;
}

async function listen(server: HttpsServer | HttpServer, host: string, port: number): Promise<AddressInfo> {
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
  return server.address() as AddressInfo;
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function startControlPlane(config: ControlPlaneConfig, log: Logger): Promise<RunningControlPlane> {
  const conflicts = configConflicts(config);
  if (conflicts.length > 0) throw new InputError(CODE.CONFIG_INVALID, conflicts.join('\n'));
  // Before anything is written: a kubeconfig that cannot be read is bad input, not a half-made data dir.
  const kubeConfig = config.mode === 'kubernetes' && config.kubernetes !== undefined ? loadKubeConfig(config.kubernetes) : undefined;
  const store = await FileStore.open(config.dataDir);
  await store.check();
  const identity = { trustDomain: config.trustDomain, zone: config.zone, rootNamespace: config.rootNamespace };
  await claimDataDir(config.dataDir, identity);
  const metricsRegistry = new Registry();
  const registry = new ServiceRegistry({
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
  if (kubeConfig === undefined) {
    const stored = await store.listRegistrations((file, reason) => {
      metrics.storeCorrupt.inc();
      log.error({ file, reason }, 'damaged registration file skipped (left as found; the agent registers again when it reconnects)');
    });
    for (const r of stored) if (r.owner !== undefined) lineage.remember(r.owner);
    registry.restore(stored);
  }

  const cas = await setUpZoneCas({ dataDir: config.dataDir, caDir: config.caDir, trustDomain: config.trustDomain, zone: config.zone });
  if (cas.retiredZoneCert !== undefined) log.warn({ retired: cas.retiredZoneCert }, 'the operator CA changed: a new zone intermediate issues from now on (the old one was moved aside)');
  // The bundle in force: read by issuance, the hub, the API's TLS and GET /v1/trust-bundle; replaced on rotation.
  const trust = { pem: cas.trustBundlePem };
  metrics.trustBundleRoots.set(cas.zone.bundle.roots.length);
  const issuer = new IdentityIssuer({ ca: cas.zone, zone: config.zone, workloadTtlMs: config.workloadTtlMs, trustBundlePem: () => trust.pem, rootNamespace: config.rootNamespace });
  const tokens = new TokenService(store, config.trustDomain, Date.now, config.rootNamespace);
  const adminToken = await store.secret('admin-token');
  await store.secret('token-signing-key');
  const initiallyRevoked = await tokens.revokedSerials();
  const revoked = { list: initiallyRevoked as readonly RevokedSerial[], key: JSON.stringify(initiallyRevoked) };

  // The policy source reports changes to the hub, which needs the loaded policy to exist first.
  const late: { hub?: WatchHub } = {};
  const onPolicyChange = (state: PolicyState): void => {
    metrics.policyValid.set(1);
    metrics.policyPolicies.set(state.policies.length);
    late.hub?.policyChanged();
  };
  const onPolicyError = (): void => {
    metrics.policyValid.set(0);
    metrics.policyErrors.inc();
  };
  // Made before the sources start: from here to listening nothing waits, so nothing can leave a watch running.
  let serving = await issuer.serving(config.rootNamespace, CONTROL_PLANE_SERVICE);
  let kube: KubernetesMode | undefined;
  let policy: ControlPolicy;
  if (kubeConfig === undefined) {
    const source = new PolicySource({ dir: config.policyDir, rootNamespace: config.rootNamespace, log, onChange: onPolicyChange, onError: onPolicyError });
    await source.start();
    policy = source;
  } else {
    kube = createKubernetesMode({ kubeConfig, zone: config.zone, rootNamespace: config.rootNamespace, log, metrics: metricsRegistry, registry, onPolicyChange, onPolicyError });
    // Policy first, then the registry; an invalid TrafficPermission set throws every problem here (and stops its watches).
    await kube.start();
    policy = kube.policy;
  }
  metrics.policyPolicies.set(policy.state.policies.length);

  const hub = new WatchHub({
    registry,
    trustDomain: config.trustDomain,
    rootNamespace: config.rootNamespace,
    zone: config.zone,
    pingIntervalMs: config.pingIntervalMs,
    maxBufferedBytes: config.maxWatchBufferBytes,
    trustBundlePem: () => trust.pem,
    policies: () => policy.state.policies,
    traffic: () => policy.state.traffic ?? [],
    revokedSerials: () => revoked.list,
    // Zero trust: a wildcard subscriber learns only the services it could be allowed to call.
    scopeDiscovery: true,
    onPush: (streams, seconds) => {
      if (streams === 0) return;
      metrics.pushDuration.observe(seconds);
      metrics.pushedMessages.inc(streams);
      metrics.configVersion.set(late.hub?.currentVersion ?? 0);
    },
    onSlowStream: (s) => {
      metrics.slowWatchers.inc();
      log.warn({ instanceId: s.instanceId, service: s.service }, 'watch stream closed: the agent read too slowly');
    },
  });
  late.hub = hub;
  metrics.configVersion.set(hub.currentVersion);
  // Revoked join tokens' certificates, re-read on an API revocation and every revocationRefreshMs (offline
  // revocations; entries that reached their notAfter leave the list): a change is pushed to every agent.
  const refreshRevoked = async (): Promise<void> => {
    const next = await tokens.revokedSerials();
    const key = JSON.stringify(next);
    if (key === revoked.key) return;
    revoked.list = next;
    revoked.key = key;
    log.info({ revokedCertificates: next.length }, 'revoked certificate list changed; pushing it to agents');
    hub.revocationsChanged();
  };
  const refreshRevokedSafely = (): void => void refreshRevoked().catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot read the join-token records for revocations'));
  const revocationTimer = setInterval(refreshRevokedSafely, config.revocationRefreshMs ?? CONTROL_DEFAULTS.revocationRefreshMs);
  revocationTimer.unref();

  // Projected tokens are JWTs and join tokens are not, so the order only decides who is asked first.
  const authenticators: readonly BootstrapAuthenticator[] = kube === undefined ? [tokens] : [kube.authenticator, tokens];
  const api = createApiServer({
    trustDomain: config.trustDomain,
    zone: config.zone,
    issuer,
    authenticators,
    endpointsFromAgents: kube === undefined,
    lineage,
    instanceLimits: config.instanceLimits,
    tokens,
    adminToken,
    registry,
    hub,
    store,
    metrics,
    log,
    tls: { certChainPem: serving.certChainPem, keyPem: serving.keyPem, trustBundlePem: trust.pem },
    currentTrustBundlePem: () => trust.pem,
    maxConnections: config.maxConnections,
    failedBootstraps: new FailedBootstrapLimiter(config.failedBootstrapLimit ?? CONTROL_DEFAULTS.failedBootstrapLimit),
    onTokenRevoked: refreshRevokedSafely,
  });
  const setApiTls = (): void => api.setSecureContext({ key: serving.keyPem, cert: serving.certChainPem, ca: trust.pem, minVersion: 'TLSv1.3' });
  // The serving certificate has a workload's lifetime: renew it at half-life, like an agent.
  const renewServing = (notAfter: Date): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      void issuer.serving(config.rootNamespace, CONTROL_PLANE_SERVICE).then(
        (next) => {
          serving = next;
          setApiTls();
          servingTimer = renewServing(next.notAfter);
          log.info({ notAfter: next.notAfter.toISOString() }, 'control plane serving certificate renewed');
        },
        (err: unknown) => {
          log.error({ err: describeError(err) }, 'cannot renew the serving certificate; retrying in 1 minute');
          servingTimer = setTimeout(() => (servingTimer = renewServing(notAfter)), 60_000);
        },
      );
    }, Math.max(1_000, (notAfter.getTime() - Date.now()) / 2));
    timer.unref();
    return timer;
  };
  let servingTimer = renewServing(serving.notAfter);

  let started = false;
  const admin = createAdminServer({
    metrics: metricsRegistry,
    ready: () => started,
    status: () => ({
      mode: config.mode,
      zone: config.zone,
      trustDomain: config.trustDomain,
      epoch: hub.epoch,
      configVersion: hub.currentVersion,
      agents: hub.streamCount,
      policy: { revision: policy.state.revision, loadedAt: policy.state.loadedAt, inForce: policy.state.policies.length, rejected: policy.state.error },
    }),
    registry: () => registry.entries(),
    policy: () => policy.state,
  });

  const bundleWatch = config.caDir === undefined ? undefined : new TrustBundleWatch({
    path: join(config.caDir, CA_FILES.bundle),
    trustDomain: config.trustDomain,
    issuers: [cas.root, cas.zone].filter((ca): ca is CertificateAuthority => ca !== undefined),
    current: () => trust.pem,
    log,
    onRejected: () => metrics.trustBundleReloads.inc({ result: 'rejected' }),
    onChange: async (pem, bundle) => {
      // The listener first (clients under a new root can connect), then what agents are told.
      trust.pem = pem;
      setApiTls();
      metrics.trustBundleRoots.set(bundle.roots.length);
      metrics.trustBundleReloads.inc({ result: 'applied' });
      hub.trustBundleChanged();
      await writeFileAtomic(join(config.dataDir, 'trust-bundle.pem'), pem).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot update <data-dir>/trust-bundle.pem'));
    },
  });

  const closeSources = async (): Promise<void> => {
    clearInterval(revocationTimer);
    bundleWatch?.close();
    // The Kubernetes mode closes its policy feed with its registry feed.
    if (kube === undefined) await policy.close();
    else await kube.close();
    hub.close();
    registry.close();
  };
  let apiAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    apiAddress = await listen(api, config.listen.host, config.listen.port);
    adminAddress = await listen(admin, config.admin.host, config.admin.port);
  } catch (err) {
    api.close();
    admin.close();
    await closeSources();
    clearTimeout(servingTimer);
    throw err;
  }
  await claimDataDir(config.dataDir, { ...identity, api: `https://${formatHost(config.listen.host === '0.0.0.0' || config.listen.host === '::' ? apiAddress.address === '::' ? '::1' : '127.0.0.1' : apiAddress.address)}:${apiAddress.port}` });
  await bundleWatch?.start();
  started = true;
  log.info({ mode: config.mode, api: `${apiAddress.address}:${apiAddress.port}`, admin: `${adminAddress.address}:${adminAddress.port}`, zone: config.zone, trustDomain: config.trustDomain, dataDir: config.dataDir }, 'control plane started');

  return {
    mode: config.mode,
    apiAddress,
    adminAddress,
    get trustBundlePem() {
      return trust.pem;
    },
    registry,
    hub: hub,
    policy,
    metrics: metricsRegistry,
    async close() {
      started = false;
      clearTimeout(servingTimer);
      await closeSources();
      const closed = Promise.all([new Promise((r) => api.close(r)), new Promise((r) => admin.close(r))]);
      api.closeAllConnections();
      admin.closeAllConnections();
      await closed;
    },
  };
}
