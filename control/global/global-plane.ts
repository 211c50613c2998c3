/**
 * The global control plane, assembled: store, state (restored from the store), mesh CA, zone tokens,
 * mesh-wide policy, the HTTP/2 listener for zones, lease checks, write-behind persistence, metrics and
 * the admin listener (`/zones`, `/zones/<name>`, `/catalogue` as JSON).
 */
import type { AddressInfo } from 'node:net';
import type { Http2SecureServer, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { Registry } from 'prom-client';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { setUpZoneCas, type ZoneCas } from '../ca-setup.js';
import type { CertificateAuthority } from '../../ca/authority.js';
import type { TrafficPermission } from '../../policy/types.js';
import { SessionHub } from './session-hub.js';
import { PolicySource } from '../policy-source.js';
import { GLOBAL_DEFAULTS, type GlobalControlConfig } from './global-config.js';
import { GlobalMetrics } from './global-metrics.js';
import { createGlobalServer } from './global-server.js';
import { GlobalState } from './global-state.js';
import type { GlobalStore } from './global-store.js';
import { createGlobalAdmin } from './global-admin.js';
import { globalUiRoutes } from './global-ui-api.js';
import { ZoneGoldenBoard } from './zone-golden.js';
import { GlobalSyncSession } from './sync-session.js';
import { ZoneTokenService } from './zone-tokens.js';
import { globalIdentity } from './zone-identity.js';
import { listen } from './listen.js';
import { Persister } from './persister.js';
import { claimDataDir } from '../identity-file.js';

/** What a global's data dir names as its zone in control.json: not a DNS label, so no zone can claim it. */
export const GLOBAL_DATA_DIR_ZONE = '(global)';

export interface RunningGlobal {
  readonly apiAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly state: GlobalState;
  readonly trustBundlePem: string;
  readonly metrics: Registry;
  close(): Promise<void>;
}

export async function startGlobalControlPlane(config: GlobalControlConfig, store: GlobalStore, log: Logger, role: 'single' | 'leader' = 'single'): Promise<RunningGlobal> {
  // The data dir says it is a global's: a zone control plane (or `trellis token`) refuses it, and
  // `trellis zone token` reads the trust domain from it.
  await claimDataDir(config.dataDir, { trustDomain: config.trustDomain, zone: GLOBAL_DATA_DIR_ZONE, rootNamespace: config.rootNamespace });
  const loaded = await store.load();
  const state = new GlobalState({ leaseMs: config.zoneLeaseMs, exportDefault: config.exportDefault }, loaded.meta === undefined ? undefined : { meta: loaded.meta, zones: loaded.zones });
  const cas = await setUpZoneCas({ dataDir: config.dataDir, caDir: config.caDir, trustDomain: config.trustDomain, zone: 'global' });
  const adminToken = await store.secret('admin-token');
  // Zones' golden-metrics edge views, in memory only (zone-golden.ts): a restarted global refills within an interval.
  const golden = new ZoneGoldenBoard();
  const registry = new Registry();
  const metrics = new GlobalMetrics(registry, () => state);
  // A change reaches the zones only once the store holds it (persister.ts): a restart then loses nothing any zone saw.
  const persister = new Persister(state, store, log, metrics, GLOBAL_DEFAULTS.persistIntervalMs, () => hub.pushAll());
  const hub = new SessionHub(state, metrics, log, () => persister.flushSoon());
  await persister.flush();
  const policy = await mirrorPolicy(config, state, () => persister.flushSoon(), log);
  const serving = await ServingCertificate.start(config, cas);
  const server = createGlobalServer({
    trustDomain: config.trustDomain,
    rootNamespace: config.rootNamespace,
    ca: cas.zone,
    // The root may issue zone intermediates when this global holds its key and it may sign CAs.
    root: cas.root !== undefined && cas.root !== cas.zone && (cas.root.certificate.basicConstraints?.pathLen ?? 1) >= 1 ? cas.root : undefined,
    zoneCertTtlMs: config.zoneCertTtlMs,
    tokens: new ZoneTokenService(store, config.trustDomain),
    tls: () => ({ ...serving.current, trustBundlePem: cas.trustBundlePem }),
    log,
    connected: (zone) => state.status(zone)?.connected === true,
    openSync: (stream: ServerHttp2Stream, zone: string) => void new GlobalSyncSession(hub.host, stream, zone),
    maxSessions: GLOBAL_DEFAULTS.maxSessions,
    golden: (zone, body) => void golden.accept(zone, body),
  });
  const h2Sessions = new Set<ServerHttp2Session>();
  server.on('session', (session) => {
    h2Sessions.add(session);
    session.on('close', () => h2Sessions.delete(session));
  });
  serving.renewInto(server, cas.trustBundlePem, log);
  const leaseTimer = checkLeases(config, state, metrics, () => persister.flushSoon(), log);

  let ready = false;
  const ui = globalUiRoutes(config, { state: () => state, role, golden, adminToken });
  const admin = createGlobalAdmin({ state: () => state, metrics: registry, ready: () => ready, trustDomain: config.trustDomain, role, ui });
  const stop = async (): Promise<void> => {
    serving.close();
    clearInterval(leaseTimer);
    hub.closeAll();
    await policy.close();
    await persister.close();
  };
  let apiAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    apiAddress = await listen(server, config.listen);
    adminAddress = await listen(admin, config.admin);
  } catch (err) {
    server.close();
    admin.close();
    await stop();
    throw err;
  }
  ready = true;
  log.info({ api: `${apiAddress.address}:${apiAddress.port}`, admin: `${adminAddress.address}:${adminAddress.port}`, zones: state.zoneNames().length, store: store.location }, 'global control plane started');
  return {
    apiAddress,
    adminAddress,
    state,
    trustBundlePem: cas.trustBundlePem,
    metrics: registry,
    async close() {
      ready = false;
      await stop();
      const closed = Promise.all([new Promise((r) => server.close(r)), new Promise((r) => admin.close(r))]);
      for (const session of h2Sessions) session.destroy();
      admin.closeAllConnections();
      await closed;
      await store.close();
    },
  };
}

/** The global's `--policy` dir, mirrored into the catalogue's policy kind (validated and watched). */
async function mirrorPolicy(config: GlobalControlConfig, state: GlobalState, onChanged: () => void, log: Logger): Promise<PolicySource> {
  const apply = (policies: readonly TrafficPermission[]): boolean => state.setPolicies(new Map(policies.map((t) => [`${t.metadata.namespace}/${t.metadata.name}`, t])));
  const policy = new PolicySource({
    dir: config.policyDir,
    rootNamespace: config.rootNamespace,
    log,
    onChange: (p) => {
      if (apply(p.policies)) onChanged();
    },
    onError: () => log.warn('the mesh-wide policy change was rejected; the last good policy stays in force'),
  });
  await policy.start();
  if (apply(policy.state.policies)) onChanged();
  return policy;
}

/** Zones whose lease lapsed go offline, checked four times per lease (at most once a second). */
function checkLeases(config: GlobalControlConfig, state: GlobalState, metrics: GlobalMetrics, publish: () => void, log: Logger): NodeJS.Timeout {
  const timer = setInterval(() => {
    const expired = state.expireLeases();
    for (const zone of expired) {
      metrics.leaseExpiries.inc({ zone });
      log.warn({ zone, leaseMs: config.zoneLeaseMs }, 'zone offline: its lease lapsed; its services leave every other zone\'s catalogue (reason zone-offline)');
    }
    if (expired.length > 0) publish();
  }, Math.max(50, Math.min(1_000, Math.floor(config.zoneLeaseMs / 4))));
  timer.unref();
  return timer;
}

/** The global's own certificate (`.../sa/trellis-global`), with a zone certificate's lifetime, renewed at half-life. */
class ServingCertificate {
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly config: GlobalControlConfig,
    private readonly ca: CertificateAuthority,
    public current: { keyPem: string; certChainPem: string; notAfter: Date },
  ) {}

  static async start(config: GlobalControlConfig, cas: ZoneCas): Promise<ServingCertificate> {
    return new ServingCertificate(config, cas.zone, await ServingCertificate.issue(config, cas.zone));
  }

  private static async issue(config: GlobalControlConfig, ca: CertificateAuthority): Promise<{ keyPem: string; certChainPem: string; notAfter: Date }> {
    const key = await generateWorkloadKey();
    const id = globalIdentity(config.trustDomain, config.rootNamespace);
    const signed = await ca.signCsr(await createCsr(key, id), id, { ttlMs: config.zoneCertTtlMs });
    return { keyPem: key.keyPem, certChainPem: signed.certChainPem, notAfter: signed.notAfter };
  }

  renewInto(server: Http2SecureServer, bundlePem: string, log: Logger): void {
    this.timer = setInterval(() => {
      if (this.current.notAfter.getTime() - Date.now() > this.config.zoneCertTtlMs / 2) return;
      void ServingCertificate.issue(this.config, this.ca).then((next) => {
        this.current = next;
        server.setSecureContext({ key: next.keyPem, cert: next.certChainPem, ca: bundlePem, minVersion: 'TLSv1.3' });
      }, (err: unknown) => log.error({ err: describeError(err) }, 'cannot renew the global serving certificate; retrying'));
    }, 60_000);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }
}
