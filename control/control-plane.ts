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
 *
 * `startControlPlane` calls one function per step, in that order: `openDataDir`, `restoreRegistry`,
 * `setUpIdentity`, `startPolicy`, `createHub`, `createApi`, `createAdmin`, `watchTrustBundle`, then opens
 * the listeners (`serve`).
 */
import { listenServer } from '../common/server-listen.js';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server as HttpsServer } from 'node:https';
import type { Server as HttpServer } from 'node:http';
import { Registry } from 'prom-client';
import type { CertificateAuthority } from '../ca/authority.js';
import { CA_FILES } from '../ca/store.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { createAdminServer } from './admin-server.js';
import { createApiServer } from './api-server.js';
import { setUpZoneCas } from './ca-setup.js';
import type { BootstrapAuthenticator } from './authenticator.js';
import { FailedBootstrapLimiter } from './bootstrap-limiter.js';
import { CONTROL_DEFAULTS, type ControlPlaneConfig, type ControlPlaneMode } from './config.js';
import type { FileStore } from './file-store.js';
import { claimDataDir } from './identity-file.js';
import { IdentityIssuer } from './identity-issuer.js';
import type { ControlMetrics } from './metrics.js';
import { createKubernetesMode, type KubernetesMode } from './kubernetes/kubernetes-mode.js';
import type { KubernetesPolicyFeed } from './kubernetes/policy-feed.js';
import type { KubeConfig } from '@kubernetes/client-node';
import { PolicySource, type PolicyState } from './policy-source.js';
import type { ServiceRegistry } from './registry.js';
import { MeshView, type DiscoveryRegistry } from './zone-sync/mesh-view.js';
import type { CertificateLineage } from './certificate-lineage.js';
import { dataDirIdentity, openDataDir, restoreRegistry } from './data-dir-restore.js';
import { TokenService } from './token-service.js';
import { RevocationList } from './revocation-list.js';
import { ServingRenewal } from './serving-renewal.js';
import { TrustBundleWatch } from './trust-bundle-watch.js';
import { WatchHub } from './watch-hub.js';
import { GoldenWindow } from './golden/golden-window.js';
import { SummaryIntake } from './golden/summary-intake.js';
import { uiApiRoutes } from './golden/ui-api.js';
import { adminCredentialCheck, isLoopback, uiRoutes } from './golden/ui-static.js';
import { attachZoneLink, zoneExportsOf } from './zone-sync/attach.js';
import type { ZoneExports } from './zone-sync/exports.js';
import type { ZoneLink } from './zone-sync/zone-link.js';
import { GoldenUpload } from './zone-sync/golden-upload.js';
import { FederationView } from './zone-sync/federated-bundles.js';

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

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function startControlPlane(config: ControlPlaneConfig, log: Logger): Promise<RunningControlPlane> {
  const { kubeConfig, store } = await openDataDir(config);
  const metricsRegistry = new Registry();
  const { registry, metrics, lineage } = await restoreRegistry(config, store, kubeConfig === undefined, metricsRegistry, log);
  const id = await setUpIdentity(config, store, metrics, log);
  // The policy source reports changes to the hub, which needs the loaded policy to exist first.
  const late: { hub?: WatchHub; zoneLink?: ZoneLink } = {};
  const { kube, policy } = await startPolicy(config, kubeConfig, { registry, metrics, metricsRegistry, log, onChanged: () => late.hub?.policyChanged() });
  // A zone of a multi-zone mesh: its link to the global control plane (control/zone-sync/attach.ts).
  // Other zones' roots of other trust domains become federated bundles for this zone's sidecars.
  const federation = new FederationView(config.trustDomain, log);
  const onTrustChanged = (): void => {
    if (late.zoneLink !== undefined && federation.refresh(late.zoneLink.records('trust'))) late.hub?.federationChanged();
  };
  const view: { mesh?: MeshView } = {};
  // One export decision: what the zone link publishes upward is what the zone ingress is told (ingress-view.ts).
  const exports = zoneExportsOf(config, registry);
  const zoneLink = await attachZoneLink(config, { registry, exports, trustBundlePem: () => id.trust.pem, log, onPoliciesChanged: () => late.hub?.policyChanged(), onTrustChanged, onCatalogueChanged: () => view.mesh?.catalogueChanged(), onExportsChanged: () => late.hub?.exportsChanged() });
  late.zoneLink = zoneLink;
  onTrustChanged();
  // Agents see other zones' exported services too, each "via the ingress of its zone" (zone-sync/mesh-view.ts).
  if (zoneLink !== undefined) view.mesh = new MeshView(registry, config.zone, { services: () => zoneLink.records('service'), ingresses: () => zoneLink.records('ingress') }, config.trustDomain);
  const hub = createHub(config, { registry: view.mesh ?? registry, exports, metrics, policy, id, log, zoneLink, federation });
  late.hub = hub;
  id.revoked.onChange = () => hub.revocationsChanged();
  id.revoked.start(config.revocationRefreshMs ?? CONTROL_DEFAULTS.revocationRefreshMs);
  // Golden metrics: agents' summaries into a 15-minute window the admin port's UI reads (control/golden/);
  // with a global, the zone's edge view goes up for its merged graph (zone-sync/golden-upload.ts).
  const golden = new GoldenWindow(config.zone);
  const goldenUpload = zoneLink === undefined ? undefined : new GoldenUpload({ zone: config.zone, window: golden, session: zoneLink.liveSession, log });
  const summaries = new SummaryIntake({ window: golden, metrics: metricsRegistry, ...(kube === undefined ? { instances: registry } : {}) });
  const api = createApi(config, { kube, lineage, registry, hub, store, metrics, id, log, summaries });
  const setApiTls = (): void => api.setSecureContext({ key: id.serving.current.keyPem, cert: id.serving.current.certChainPem, ca: id.trust.pem, minVersion: 'TLSv1.3' });
  id.serving.start(setApiTls);
  const state = { started: false };
  const admin = createAdmin(config, { metricsRegistry, registry, hub, policy, ready: () => state.started, zoneLink, golden, adminToken: id.adminToken });
  const bundleWatch = watchTrustBundle(config, { id, metrics, hub, setApiTls, log, zoneLink });
  const closeSources = async (): Promise<void> => {
    id.revoked.close();
    bundleWatch?.close();
    // The Kubernetes mode closes its policy feed with its registry feed.
    if (kube === undefined) await policy.close();
    else await kube.close();
    goldenUpload?.close();
    await zoneLink?.close();
    hub.close();
    registry.close();
  };
  const { apiAddress, adminAddress } = await serve(config, api, admin, async () => {
    await closeSources();
    id.serving.close();
  });
  await bundleWatch?.start();
  state.started = true;
  log.info({ mode: config.mode, api: `${apiAddress.address}:${apiAddress.port}`, admin: `${adminAddress.address}:${adminAddress.port}`, zone: config.zone, trustDomain: config.trustDomain, dataDir: config.dataDir }, 'control plane started');

  return {
    mode: config.mode,
    apiAddress,
    adminAddress,
    get trustBundlePem() {
      return id.trust.pem;
    },
    registry,
    hub: hub,
    policy,
    metrics: metricsRegistry,
    async close() {
      state.started = false;
      id.serving.close();
      await closeSources();
      const closed = Promise.all([new Promise((r) => api.close(r)), new Promise((r) => admin.close(r))]);
      api.closeAllConnections();
      admin.closeAllConnections();
      await closed;
    },
  };
}

/** What issues and checks identities: the zone CAs, the trust bundle in force, tokens, the API's own certificate. */
interface IdentityParts {
  readonly cas: Awaited<ReturnType<typeof setUpZoneCas>>;
  /** The bundle in force: read by issuance, the hub, the API's TLS and GET /v1/trust-bundle; replaced on rotation. */
  readonly trust: { pem: string };
  readonly issuer: IdentityIssuer;
  readonly tokens: TokenService;
  readonly adminToken: string;
  readonly revoked: RevocationList;
  readonly serving: ServingRenewal;
}

async function setUpIdentity(config: ControlPlaneConfig, store: FileStore, metrics: ControlMetrics, log: Logger): Promise<IdentityParts> {
  const cas = await setUpZoneCas({ dataDir: config.dataDir, caDir: config.caDir, trustDomain: config.trustDomain, zone: config.zone });
  if (cas.retiredZoneCert !== undefined) log.warn({ retired: cas.retiredZoneCert }, 'the operator CA changed: a new zone intermediate issues from now on (the old one was moved aside)');
  const trust = { pem: cas.trustBundlePem };
  metrics.trustBundleRoots.set(cas.zone.bundle.roots.length);
  const issuer = new IdentityIssuer({ ca: cas.zone, zone: config.zone, workloadTtlMs: config.workloadTtlMs, trustBundlePem: () => trust.pem, rootNamespace: config.rootNamespace });
  const tokens = new TokenService(store, config.trustDomain, Date.now, config.rootNamespace);
  const adminToken = await store.secret('admin-token');
  await store.secret('token-signing-key');
  const revoked = await RevocationList.load(tokens, log);
  // Made before the sources start: from here to listening nothing waits, so nothing can leave a watch running.
  const serving = await ServingRenewal.issue(issuer, config.rootNamespace, log);
  return { cas, trust, issuer, tokens, adminToken, revoked, serving };
}

interface PolicyDeps {
  readonly registry: ServiceRegistry;
  readonly metrics: ControlMetrics;
  readonly metricsRegistry: Registry;
  readonly log: Logger;
  readonly onChanged: () => void;
}

/** The policy in force, loaded (and valid) before the API opens; in Kubernetes mode with the endpoint feed. */
async function startPolicy(config: ControlPlaneConfig, kubeConfig: KubeConfig | undefined, deps: PolicyDeps): Promise<{ kube: KubernetesMode | undefined; policy: ControlPolicy }> {
  const { metrics, log } = deps;
  const onPolicyChange = (state: PolicyState): void => {
    metrics.policyValid.set(1);
    metrics.policyPolicies.set(state.policies.length);
    deps.onChanged();
  };
  const onPolicyError = (): void => {
    metrics.policyValid.set(0);
    metrics.policyErrors.inc();
  };
  let kube: KubernetesMode | undefined;
  let policy: ControlPolicy;
  if (kubeConfig === undefined) {
    const source = new PolicySource({ dir: config.policyDir, rootNamespace: config.rootNamespace, log, onChange: onPolicyChange, onError: onPolicyError });
    await source.start();
    policy = source;
  } else {
    kube = createKubernetesMode({ kubeConfig, zone: config.zone, rootNamespace: config.rootNamespace, log, metrics: deps.metricsRegistry, registry: deps.registry, onPolicyChange, onPolicyError });
    // Policy first, then the registry; an invalid TrafficPermission set throws every problem here (and stops its watches).
    await kube.start();
    policy = kube.policy;
  }
  metrics.policyPolicies.set(policy.state.policies.length);
  return { kube, policy };
}

function createHub(config: ControlPlaneConfig, deps: { registry: DiscoveryRegistry; exports: ZoneExports; metrics: ControlMetrics; policy: ControlPolicy; id: IdentityParts; log: Logger; zoneLink: ZoneLink | undefined; federation: FederationView }): WatchHub {
  const { metrics, policy, id, log, zoneLink } = deps;
  const hub: WatchHub = new WatchHub({
    registry: deps.registry,
    trustDomain: config.trustDomain,
    rootNamespace: config.rootNamespace,
    zone: config.zone,
    pingIntervalMs: config.pingIntervalMs,
    maxBufferedBytes: config.maxWatchBufferBytes,
    trustBundlePem: () => id.trust.pem,
    // A zone of a multi-zone mesh adds the global's mesh-wide policies to its own.
    policies: () => (zoneLink === undefined ? policy.state.policies : [...policy.state.policies, ...zoneLink.policies()]),
    traffic: () => policy.state.traffic ?? [],
    ingressExports: (namespace, service) => deps.exports.exported(namespace, service),
    revokedSerials: () => id.revoked.list,
    federatedBundles: () => deps.federation.bundles,
    // Zero trust: a wildcard subscriber learns only the services it could be allowed to call.
    scopeDiscovery: true,
    onPush: (streams, seconds) => {
      if (streams === 0) return;
      metrics.pushDuration.observe(seconds);
      metrics.pushedMessages.inc(streams);
      metrics.configVersion.set(hub.currentVersion);
    },
    onSlowStream: (s) => {
      metrics.slowWatchers.inc();
      log.warn({ instanceId: s.instanceId, service: s.service }, 'watch stream closed: the agent read too slowly');
    },
  });
  metrics.configVersion.set(hub.currentVersion);
  return hub;
}

interface ApiDeps {
  readonly kube: KubernetesMode | undefined;
  readonly lineage: CertificateLineage;
  readonly registry: ServiceRegistry;
  readonly hub: WatchHub;
  readonly store: FileStore;
  readonly metrics: ControlMetrics;
  readonly id: IdentityParts;
  readonly log: Logger;
  readonly summaries: SummaryIntake;
}

function createApi(config: ControlPlaneConfig, deps: ApiDeps): HttpsServer {
  const { kube, id } = deps;
  // Projected tokens are JWTs and join tokens are not, so the order only decides who is asked first.
  const authenticators: readonly BootstrapAuthenticator[] = kube === undefined ? [id.tokens] : [kube.authenticator, id.tokens];
  return createApiServer({
    trustDomain: config.trustDomain,
    zone: config.zone,
    issuer: id.issuer,
    authenticators,
    endpointsFromAgents: kube === undefined,
    lineage: deps.lineage,
    instanceLimits: config.instanceLimits,
    tokens: id.tokens,
    adminToken: id.adminToken,
    registry: deps.registry,
    hub: deps.hub,
    store: deps.store,
    metrics: deps.metrics,
    log: deps.log,
    tls: { certChainPem: id.serving.current.certChainPem, keyPem: id.serving.current.keyPem, trustBundlePem: id.trust.pem },
    currentTrustBundlePem: () => id.trust.pem,
    maxConnections: config.maxConnections,
    failedBootstraps: new FailedBootstrapLimiter(config.failedBootstrapLimit ?? CONTROL_DEFAULTS.failedBootstrapLimit),
    onTokenRevoked: id.revoked.refresh,
    summaries: deps.summaries,
  });
}

function createAdmin(config: ControlPlaneConfig, deps: { metricsRegistry: Registry; registry: ServiceRegistry; hub: WatchHub; policy: ControlPolicy; ready: () => boolean; zoneLink: ZoneLink | undefined; golden: GoldenWindow; adminToken: string }): HttpServer {
  const { hub, policy, zoneLink } = deps;
  return createAdminServer({
    metrics: deps.metricsRegistry,
    ready: deps.ready,
    status: () => ({
      mode: config.mode,
      zone: config.zone,
      trustDomain: config.trustDomain,
      epoch: hub.epoch,
      configVersion: hub.currentVersion,
      agents: hub.streamCount,
      policy: { revision: policy.state.revision, loadedAt: policy.state.loadedAt, inForce: policy.state.policies.length, rejected: policy.state.error },
    }),
    registry: () => deps.registry.entries(),
    policy: () => policy.state,
    // The web UI and its JSON (control/golden/): behind the admin credential unless the port is on loopback.
    routes: uiRoutes(uiApiRoutes({ ...config, registry: deps.registry, window: deps.golden, policies: () => policy.state.policies, configVersion: () => hub.currentVersion, agentsConnected: () => hub.streamCount, ...(zoneLink === undefined ? {} : { globalLink: () => zoneLink.status() }) }), isLoopback(config.admin.host) ? {} : { guard: adminCredentialCheck(deps.adminToken) }),
    ...(zoneLink === undefined ? {} : { extra: { '/global': () => zoneLink.status(), '/global/catalogue': () => ({ service: zoneLink.records('service'), ingress: zoneLink.records('ingress'), trust: zoneLink.records('trust'), policy: zoneLink.policies() }) } }),
  });
}

/** With an operator CA: its bundle.pem, watched for root rotation once the listeners are open. */
function watchTrustBundle(config: ControlPlaneConfig, deps: { id: IdentityParts; metrics: ControlMetrics; hub: WatchHub; setApiTls: () => void; log: Logger; zoneLink: ZoneLink | undefined }): TrustBundleWatch | undefined {
  if (config.caDir === undefined) return undefined;
  const { id, metrics, log } = deps;
  return new TrustBundleWatch({
    path: join(config.caDir, CA_FILES.bundle),
    trustDomain: config.trustDomain,
    issuers: [id.cas.root, id.cas.zone].filter((ca): ca is CertificateAuthority => ca !== undefined),
    current: () => id.trust.pem,
    log,
    onRejected: () => metrics.trustBundleReloads.inc({ result: 'rejected' }),
    onChange: async (pem, bundle) => {
      // The listener first (clients under a new root can connect), then what agents are told.
      id.trust.pem = pem;
      deps.setApiTls();
      metrics.trustBundleRoots.set(bundle.roots.length);
      metrics.trustBundleReloads.inc({ result: 'applied' });
      deps.hub.trustBundleChanged();
      deps.zoneLink?.trustChanged();
      await writeFileAtomic(join(config.dataDir, 'trust-bundle.pem'), pem).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot update <data-dir>/trust-bundle.pem'));
    },
  });
}

/** Opens both listeners (a failure closes everything made so far), then records the API's address in the data dir. */
async function serve(config: ControlPlaneConfig, api: HttpsServer, admin: HttpServer, undo: () => Promise<void>): Promise<{ apiAddress: AddressInfo; adminAddress: AddressInfo }> {
  let apiAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    apiAddress = await listenServer(api, config.listen.port, config.listen.host);
    adminAddress = await listenServer(admin, config.admin.port, config.admin.host);
  } catch (err) {
    api.close();
    admin.close();
    await undo();
    throw err;
  }
  const wildcard = config.listen.host === '0.0.0.0' || config.listen.host === '::';
  const reachable = wildcard ? (apiAddress.address === '::' ? '::1' : '127.0.0.1') : apiAddress.address;
  await claimDataDir(config.dataDir, { ...dataDirIdentity(config), api: `https://${formatHost(reachable)}:${apiAddress.port}` });
  return { apiAddress, adminAddress };
}
