/**
 * The agent beside one workload, assembled. Start-up order matters:
 *  1. identity: the certificate saved in `--data-dir` if still valid, else one issued with the join token
 *     (an unreachable control plane is retried with backoff; a refused token stops the start, clearly);
 *  2. the sidecar, in this process, with the last saved snapshot if there is one (serving resumes before
 *     the control plane is back), and a first health probe of the app;
 *  3. the watch, which registers this instance and streams config; renewal at half-life.
 * Shutdown reverses it: deregister (callers stop choosing this endpoint), stop accepting, drain within the
 * grace period, close. Each step is a function below (`assembleAgent` calls them in order); identity is
 * identity-bootstrap.ts, the config in force config-in-force.ts, the status view agent-status.ts.
 */
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Registry } from 'prom-client';
import { CONTROL_PATHS, type Registration } from '../api/control-protocol.js';
import { SUBZONE_LABEL } from '../api/data-plane.js';
import { controlRequest } from '../api/control-client.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { captureAppLocalAddress, createSidecar, type Sidecar, type SidecarAddresses, type SidecarConfig } from '../proxy/sidecar.js';
import { createAgentAdminServer } from './admin-server.js';
import { AgentMetrics } from './agent-metrics.js';
import { agentStatus, type AgentStatus } from './agent-status.js';
import { AppHealth } from './app-health.js';
import { createStatusServer } from './status-server.js';
import { ConfigInForce } from './config-in-force.js';
import { ConfigWatch } from './config-watch.js';
import { GoldenReporter } from './golden-reporter.js';
import { AGENT_LIMITS } from './limits.js';
import { SUMMARY_PATH } from '../api/golden-summary.js';
import type { AgentConfig, UpstreamSpec } from './config.js';
import type { HeldIdentity, IdentityManager } from './identity-manager.js';
import { controlEndpointFor, createIdentityManager, obtainIdentity, type EndpointFor } from './identity-bootstrap.js';
import { AgentStateDir } from './state-dir.js';
import { UPSTREAM_CHANGE_TIMEOUT_MS, UpstreamSet, type UpstreamChange } from './upstream-set.js';

export const AGENT_VERSION = '0.1.0';

export interface RunningAgent {
  readonly registry: Registry;
  addresses(): SidecarAddresses & { readonly agentAdmin: AddressInfo | undefined; readonly status: AddressInfo | undefined };
  status(): AgentStatus;
  /**
   * Replaces the upstreams in force (upstream-set.ts): listeners of services the snapshot carries are bound
   * before this resolves; newly named services are asked of the control plane, waited for at most
   * `timeoutMs`; listeners no longer named stop accepting and drain theirs.
   */
  setUpstreams(next: readonly UpstreamSpec[], timeoutMs?: number): Promise<UpstreamChange>;
  stop(graceMs?: number): Promise<void>;
}

async function localAddressTowards(url: URL): Promise<string> {
  const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 443) });
  // A black-holed address would otherwise hold the watch's connect for the kernel's SYN retries (minutes).
  socket.setTimeout(5_000, () => socket.destroy(new Error(`connect to ${url.host} timed out`)));
  try {
    await once(socket, 'connect');
    return socket.localAddress ?? '127.0.0.1';
  } finally {
    socket.destroy();
  }
}

export interface StartOptions {
  /** Aborts a start that is still waiting for the control plane (SIGTERM before the first certificate). */
  readonly signal?: AbortSignal;
  /** A loopback `POST /quitquitquit` on the status port (a Job's app is done): the caller stops the agent. */
  readonly onQuitRequested?: () => void;
  /** Extra readiness conditions (e.g. the CNI redirect check): each returns its not-ready reason, or null. */
  readonly readinessGates?: readonly (() => string | null)[];
}

/** What the status port shows before the agent is assembled, and the handle to close it. */
interface StatusPort {
  view: () => { readonly ready: boolean; readonly reasons?: readonly string[] };
  address: AddressInfo | undefined;
  close: () => Promise<void>;
}

export async function startAgent(config: AgentConfig, log: Logger, options: StartOptions = {}): Promise<RunningAgent> {
  const registry = new Registry();
  // The status port opens first: the kubelet probes liveness (and the app's probes) while the agent still
  // waits for its certificate, and a Job's app may ask it to quit before the control plane ever answers.
  const statusPort: StatusPort = { view: () => ({ ready: false, reasons: ['getting the workload certificate'] }), address: undefined, close: async () => undefined };
  if (config.status !== null) {
    const server = createStatusServer({ probes: config.appProbes, ready: () => statusPort.view(), onQuit: () => options.onQuitRequested?.(), log, registry });
    server.listen(config.status.port, config.status.host);
    await once(server, 'listening');
    statusPort.address = server.address() as AddressInfo;
    statusPort.close = async () => {
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      await closed;
    };
  }
  try {
    return await assembleAgent(config, log, options, registry, statusPort);
  } catch (err) {
    await statusPort.close();
    throw err;
  }
}

/** What the steps share: made once by `prepare`, before any step runs. */
interface AgentParts {
  readonly config: AgentConfig;
  readonly log: Logger;
  readonly registry: Registry;
  readonly statusPort: StatusPort;
  readonly stateDir: AgentStateDir | undefined;
  readonly instanceId: string;
  readonly metrics: AgentMetrics;
  readonly endpointFor: EndpointFor;
  readonly identity: IdentityManager;
  readonly state: ConfigInForce;
  readonly upstreams: UpstreamSet;
  /** Set once built; the identity and health callbacks can fire before (and then have nothing to update). */
  readonly late: { sidecar?: Sidecar; watch?: ConfigWatch };
  /** Where other sidecars reach this one; learnt on the first registration when not given. */
  address: string | undefined;
}

/** The parts every step runs with, once the running pieces exist. */
interface Assembled {
  readonly sidecar: Sidecar;
  readonly tunnelPort: number;
  readonly health: AppHealth | undefined;
  readonly watch: ConfigWatch;
  readonly golden: GoldenReporter;
  readonly admin: Server | undefined;
  readonly status: () => AgentStatus;
}

async function assembleAgent(config: AgentConfig, log: Logger, options: StartOptions, registry: Registry, statusPort: StatusPort): Promise<RunningAgent> {
  const parts = await prepare(config, log, registry, statusPort);
  // 1. Identity.
  const { held } = await obtainIdentity(parts.identity, parts, options.signal);
  // 2. Sidecar, with the last saved snapshot, and a first health probe of the app.
  const initial = await parts.state.restore();
  parts.metrics.configStale.set(1);
  const health = await startAppHealth(parts);
  const { sidecar, tunnelPort } = await startSidecar(parts, held, initial);
  if (parts.state.restoredFromDisk) log.warn({ version: parts.state.snapshot?.version }, 'serving the config saved before this restart until the control plane answers');
  // 3. Watch and rotation.
  const watch = startWatch(parts, sidecar, tunnelPort, health);
  const golden = startGolden(parts, watch);
  parts.identity.schedule();
  const status = (): AgentStatus => agentStatus({ sidecar, watch, health, identity: parts.identity, state: parts.state, gates: options.readinessGates ?? [] });
  statusPort.view = () => {
    const now = status();
    return { ready: now.ready, reasons: now.reasons };
  };
  const admin = await startAdmin(parts, status, tunnelPort);
  return runningAgent(parts, { sidecar, tunnelPort, health, watch, golden, admin, status });
}

async function prepare(config: AgentConfig, log: Logger, registry: Registry, statusPort: StatusPort): Promise<AgentParts> {
  const stateDir = config.dataDir === undefined ? undefined : await AgentStateDir.open(config.dataDir);
  const instanceId = stateDir === undefined ? `${config.service}-${process.pid}-${Date.now().toString(36)}` : await stateDir.instanceId();
  const metrics = new AgentMetrics(registry);
  const caBundle = config.caFile === undefined ? undefined : await fs.readFile(config.caFile, 'utf8');
  const endpointFor = controlEndpointFor(config, caBundle);
  const late: AgentParts['late'] = {};
  const identity = createIdentityManager({ config, caBundle, endpointFor, stateDir, metrics, log, onRenewed: (next) => late.sidecar?.setIdentity(next) });
  const upstreams = new UpstreamSet(config.upstreams);
  const state = new ConfigInForce({ upstreams: () => upstreams.current, stateDir, identity, metrics, log });
  // Given, or the tunnel's own bind address; else the local address of a connection to the control plane,
  // learnt on the first connect that succeeds (never guessed).
  const address = config.address ?? (config.tunnel.host !== '0.0.0.0' && config.tunnel.host !== '::' ? config.tunnel.host : undefined);
  return { config, log, registry, statusPort, stateDir, instanceId, metrics, endpointFor, identity, state, upstreams, late, address };
}

/** The app's health, reported to the control plane on each change once the watch is connected. */
async function startAppHealth(parts: AgentParts): Promise<AppHealth | undefined> {
  const { config, metrics, log, identity, late } = parts;
  // No app port: nothing to check, and nothing is served, so the (portless) endpoint counts as healthy.
  if (config.healthCheck === null) {
    metrics.appHealthy.set(1);
    return undefined;
  }
  // In transparent capture an app off loopback is checked from the hand-off source, or the rules would
  // send the check to the inbound capture port (see proxy/inbound/app-source.ts).
  const spec = config.capture === undefined ? config.healthCheck : { ...config.healthCheck, localAddress: captureAppLocalAddress(config.healthCheck.host) };
  const health = new AppHealth(spec, (result) => {
    metrics.appHealthy.set(result.healthy ? 1 : 0);
    log.info({ healthy: result.healthy, detail: result.detail }, 'app health changed');
    // The first probe runs before the watch exists.
    if (late.watch?.connected !== true) return;
    void controlRequest(parts.endpointFor(identity.current), {
      method: 'PUT',
      path: CONTROL_PATHS.endpoint(parts.instanceId),
      body: { healthy: result.healthy, detail: result.detail },
      clientCert: identity.current as HeldIdentity,
      timeoutMs: 5_000,
    }).catch((err: unknown) => log.warn({ err: describeError(err) }, 'cannot report app health; the next registration carries it'));
  });
  await health.start();
  return health;
}

async function startSidecar(parts: AgentParts, held: HeldIdentity, initial: SidecarConfig | undefined): Promise<{ sidecar: Sidecar; tunnelPort: number }> {
  const { config, state } = parts;
  const sidecar = createSidecar({
    service: config.service,
    namespace: config.namespace,
    trustDomain: held.trustDomain,
    zone: state.snapshot?.snapshot.zone ?? config.zone ?? 'default',
    ...(config.labels?.[SUBZONE_LABEL] === undefined ? {} : { subzone: config.labels[SUBZONE_LABEL] }),
    identity: held,
    appPorts: config.appPorts,
    tunnel: { address: config.tunnel.host, port: config.tunnel.port },
    admin: null,
    registry: parts.registry,
    logger: parts.log,
    rootNamespace: state.snapshot?.snapshot.rootNamespace ?? config.rootNamespace,
    accessLog: config.accessLog,
    ...(initial === undefined ? {} : { config: initial }),
    ...(config.capture === undefined ? {} : { capture: config.capture }),
  });
  parts.late.sidecar = sidecar;
  await sidecar.start();
  return { sidecar, tunnelPort: (sidecar.addresses().tunnel as AddressInfo).port };
}

/** The watch registers this instance and streams its config into the sidecar. */
function startWatch(parts: AgentParts, sidecar: Sidecar, tunnelPort: number, health: AppHealth | undefined): ConfigWatch {
  const { config, metrics, log, identity } = parts;
  const registration = async (): Promise<Registration> => ({
    instanceId: parts.instanceId,
    ...(config.zone === undefined ? {} : { zone: config.zone }),
    address: (parts.address ??= await localAddressTowards(config.controlUrl)),
    tunnelPort,
    ports: config.appPorts.map((p) => ({ port: p.port, protocol: p.protocol })),
    healthy: health?.healthy ?? true,
    upstreams: parts.upstreams.subscription(),
    agentVersion: AGENT_VERSION,
    ...(Object.keys(config.labels ?? {}).length === 0 ? {} : { labels: config.labels }),
    ...(config.export === undefined ? {} : { export: config.export }),
  });
  const watch = new ConfigWatch({
    endpoint: () => parts.endpointFor(identity.current),
    clientCert: () => identity.current as HeldIdentity,
    registration,
    log,
    onConfig: (next) => void parts.state.apply(next, sidecar).then(() => parts.upstreams.applied(next.snapshot)),
    onConnected: () => {
      metrics.controlPlaneConnected.set(1);
      log.info({ control: config.controlUrl.host }, 'connected to the control plane');
    },
    onDisconnected: (reason) => {
      metrics.controlPlaneConnected.set(0);
      metrics.configStale.set(1);
      log.warn({ reason }, 'lost the control plane; serving the last config');
    },
  });
  parts.late.watch = watch;
  watch.start();
  return watch;
}

/** Golden metrics: a summary of the sidecar's counters to the control plane every interval (golden-reporter.ts). */
function startGolden(parts: AgentParts, watch: ConfigWatch): GoldenReporter {
  const { identity, state } = parts;
  const reporter = new GoldenReporter({
    registry: parts.registry,
    instanceId: parts.instanceId,
    intervalMs: parts.config.summaryIntervalMs ?? AGENT_LIMITS.summaryIntervalMs,
    connected: () => watch.connected,
    config: () => ({ version: state.snapshot?.version ?? null, policyRevision: state.snapshot?.snapshot.policyRevision ?? null, stale: !watch.connected }),
    certNotAfter: () => identity.current?.notAfter,
    send: (summary) => controlRequest<void>(parts.endpointFor(identity.current), { method: 'POST', path: SUMMARY_PATH, body: summary, clientCert: identity.current as HeldIdentity, timeoutMs: 5_000 }),
    log: parts.log,
  });
  reporter.start();
  return reporter;
}

/** The agent's admin port (`--admin`): status, metrics, the config in force and the certificate. */
async function startAdmin(parts: AgentParts, status: () => AgentStatus, tunnelPort: number): Promise<Server | undefined> {
  const { config, identity, state } = parts;
  if (config.admin === null) return undefined;
  const admin = createAgentAdminServer({
    registry: parts.registry,
    status,
    config: () => ({ instanceId: parts.instanceId, address: parts.address, tunnelPort, service: config.service, namespace: config.namespace, version: state.snapshot?.version, epoch: state.snapshot?.epoch, snapshot: state.snapshot?.snapshot }),
    certificates: () => {
      const h = identity.current;
      return h === undefined ? null : { spiffeId: h.spiffeId, notBefore: h.notBefore.toISOString(), notAfter: h.notAfter.toISOString(), certChainPem: h.certChainPem, trustBundlePem: h.trustBundlePem };
    },
  });
  admin.listen(config.admin.port, config.admin.host);
  await once(admin, 'listening');
  return admin;
}

function runningAgent(parts: AgentParts, running: Assembled): RunningAgent {
  let stopping: Promise<void> | undefined;
  return {
    registry: parts.registry,
    addresses: () => ({ ...running.sidecar.addresses(), agentAdmin: running.admin?.address() as AddressInfo | undefined, status: parts.statusPort.address }),
    status: running.status,
    async setUpstreams(next, timeoutMs = UPSTREAM_CHANGE_TIMEOUT_MS) {
      const resubscribe = parts.upstreams.replace(next);
      await parts.state.reapply(running.sidecar);
      if (resubscribe) running.watch.restart();
      await parts.upstreams.until(parts.upstreams.missingFrom(parts.state.snapshot?.snapshot), timeoutMs);
      return { notSent: parts.upstreams.missingFrom(parts.state.snapshot?.snapshot), waiting: parts.state.waiting };
    },
    stop(graceMs = parts.config.drainGraceMs) {
      stopping ??= stopAgent(parts, running, graceMs);
      return stopping;
    },
  };
}

async function stopAgent(parts: AgentParts, running: Assembled, graceMs: number): Promise<void> {
  const { identity, log, statusPort } = parts;
  statusPort.view = () => ({ ready: false, reasons: ['stopping'] });
  identity.stop();
  parts.upstreams.release();
  running.health?.stop();
  parts.state.cancelPendingSave();
  // Deregister first, so callers stop choosing this endpoint before its listeners stop accepting.
  try {
    await controlRequest(parts.endpointFor(identity.current), { method: 'DELETE', path: CONTROL_PATHS.endpoint(parts.instanceId), clientCert: identity.current as HeldIdentity, timeoutMs: 2_000 });
    log.info({ instanceId: parts.instanceId }, 'deregistered');
  } catch (err) {
    log.warn({ err: describeError(err) }, 'could not deregister (the control plane drops the endpoint when the watch closes)');
  }
  running.golden.stop();
  running.watch.stop();
  await parts.state.saveNow();
  await running.sidecar.stop(graceMs);
  const admin = running.admin;
  if (admin !== undefined) {
    const closed = new Promise((r) => admin.close(r));
    admin.closeAllConnections();
    await closed;
  }
  // Last: the kubelet keeps seeing a live process (and not-ready) while the agent drains.
  await statusPort.close();
}
