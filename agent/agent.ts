/**
 * The agent beside one workload, assembled. Start-up order matters:
 *  1. identity: the certificate saved in `--data-dir` if still valid, else one issued with the join token
 *     (an unreachable control plane is retried with backoff; a refused token stops the start, clearly);
 *  2. the sidecar, in this process, with the last saved snapshot if there is one (serving resumes before
 *     the control plane is back), and a first health probe of the app;
 *  3. the watch, which registers this instance and streams config; renewal at half-life.
 * Shutdown reverses it: deregister (callers stop choosing this endpoint), stop accepting, drain within the
 * grace period, close.
 */
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { CONTROL_PATHS, type Registration } from '../api/control-protocol.js';
import { ControlError, controlRequest, type ControlEndpoint } from '../api/control-client.js';
import { TrellisError, describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { captureAppLocalAddress, createSidecar, type Sidecar, type SidecarAddresses } from '../proxy/sidecar.js';
import { createAgentAdminServer } from './admin-server.js';
import { AgentMetrics } from './agent-metrics.js';
import { AppHealth } from './app-health.js';
import { bootstrapTrustDomain } from './bootstrap-trust-domain.js';
import { createStatusServer } from './status-server.js';
import { Backoff } from '../common/backoff.js';
import type { VersionedSnapshot } from './config-state.js';
import { ConfigWatch } from './config-watch.js';
import type { AgentConfig } from './config.js';
import { holdIdentity, IdentityManager, type HeldIdentity } from './identity-manager.js';
import { buildSidecarConfig } from './sidecar-config.js';
import type { OutboundListener } from '../api/data-plane.js';
import { withTrustBundle } from './trust-bundle-update.js';
import { AgentStateDir } from './state-dir.js';
import { CODE } from '../common/error-codes.js';

export const AGENT_VERSION = '0.1.0';

export interface RunningAgent {
  readonly registry: Registry;
  addresses(): SidecarAddresses & { readonly agentAdmin: AddressInfo | undefined; readonly status: AddressInfo | undefined };
  status(): { readonly ready: boolean } & Record<string, unknown>;
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

/** OpenSSL's verify codes that a retry cannot fix: the server's chain does not lead to the given roots. */
const TLS_VERIFY_CODES = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_SIGNATURE_FAILURE']);

function tlsVerifyFailure(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth += 1) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== undefined && TLS_VERIFY_CODES.has(code)) return code;
  }
  return undefined;
}

async function assembleAgent(config: AgentConfig, log: Logger, options: StartOptions, registry: Registry, statusPort: StatusPort): Promise<RunningAgent> {
  const stateDir = config.dataDir === undefined ? undefined : await AgentStateDir.open(config.dataDir);
  const instanceId = stateDir === undefined ? `${config.service}-${process.pid}-${Date.now().toString(36)}` : await stateDir.instanceId();
  const metrics = new AgentMetrics(registry);
  const caBundle = config.caFile === undefined ? undefined : await fs.readFile(config.caFile, 'utf8');

  const readToken = async (): Promise<string | undefined> => {
    if (config.tokenFile === undefined) return undefined;
    try {
      return (await fs.readFile(config.tokenFile, 'utf8')).trim();
    } catch (err) {
      // A typo in the path does not fix itself: fail the start (exit 2) instead of retrying forever.
      const code = (err as NodeJS.ErrnoException).code ?? describeError(err);
      throw new TrellisError(CODE.AGENT_TOKEN_FILE, `--token-file ${config.tokenFile}: ${code === 'ENOENT' ? 'no such file' : `cannot be read (${code})`}`, { side: 'input', cause: err });
    }
  };
  const endpointFor = (held: HeldIdentity | undefined): ControlEndpoint => {
    const bundle = held?.trustBundlePem ?? caBundle;
    if (bundle === undefined) throw new TrellisError(CODE.AGENT_NO_TRUST, 'no trust bundle for the first contact with the control plane: give --ca-file', { side: 'input' });
    return { url: config.controlUrl, trustBundlePem: bundle, rootNamespace: config.rootNamespace, ...(held === undefined ? {} : { trustDomain: held.trustDomain }) };
  };
  // Set once built; the identity callback can fire before (it then has no sidecar to update).
  const late: { sidecar?: Sidecar; watch?: ConfigWatch } = {};
  const identity = new IdentityManager({
    endpoint: endpointFor,
    readToken,
    wantedId: (token) => {
      // A projected service-account token names no trust domain: it is then read from the mesh roots.
      const trustDomain = bootstrapTrustDomain({ configured: config.trustDomain, token, bundlePem: caBundle, bundleSource: config.caFile ?? '--ca-file' });
      return `spiffe://${trustDomain}/ns/${config.namespace}/sa/${config.service}`;
    },
    log,
    onRenewed: (next) => {
      metrics.renewals.inc({ result: 'ok' });
      late.sidecar?.setIdentity(next);
      void stateDir?.saveIdentity(next).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot save the renewed certificate'));
    },
    onRenewalFailed: () => metrics.renewals.inc({ result: 'failed' }),
  });

  // 1. Identity.
  const saved = await stateDir?.loadIdentity().catch((err: unknown) => {
    log.warn({ err: describeError(err) }, 'saved identity unreadable; bootstrapping again');
    return undefined;
  });
  let adopted = false;
  if (saved !== undefined) {
    try {
      adopted = identity.adopt(holdIdentity(saved));
    } catch (err) {
      log.warn({ err: describeError(err) }, 'saved identity unusable; bootstrapping again');
    }
  }
  if (!adopted) {
    const backoff = new Backoff({ initialMs: 500, maxMs: 15_000 });
    for (;;) {
      try {
        const held = await identity.issueWithToken();
        await stateDir?.saveIdentity(held);
        break;
      } catch (err) {
        // 429: too many refused attempts from this address (the control plane's limit); waiting helps.
        const refused = err instanceof ControlError && err.status >= 400 && err.status < 500 && err.status !== 429;
        if (refused) throw new TrellisError(CODE.AGENT_BOOTSTRAP_REFUSED, `the control plane refused this workload's credential: ${describeError(err)}`, { side: 'input', cause: err });
        // Our own input (no --ca-file, an unreadable --token-file): nothing was sent, so say what it is.
        if (err instanceof TrellisError && err.side === 'input') throw err;
        const untrusted = tlsVerifyFailure(err);
        if (untrusted !== undefined) {
          throw new TrellisError(CODE.AGENT_CONTROL_UNTRUSTED, `the control plane's certificate does not verify against the roots in --ca-file ${config.caFile ?? '(none)'} (${untrusted}): give its trust bundle (<control data-dir>/trust-bundle.pem)`, { side: 'input', cause: err });
        }
        const wait = backoff.next();
        log.warn({ err: describeError(err), retryInMs: wait }, 'cannot get a certificate yet; retrying');
        try {
          await sleep(wait, undefined, options.signal === undefined ? {} : { signal: options.signal });
        } catch {
          throw new TrellisError(CODE.AGENT_START_ABORTED, 'stopped before the first certificate arrived', { side: 'internal' });
        }
      }
    }
  }
  const held = identity.current as HeldIdentity;
  log.info({ spiffeId: held.spiffeId, notAfter: held.notAfter.toISOString(), fromDisk: adopted }, 'workload identity ready');

  // 2. Sidecar, with the last saved snapshot.
  let inForce: VersionedSnapshot | undefined = await stateDir?.loadSnapshot().catch((err: unknown) => {
    log.warn({ err: describeError(err) }, 'saved snapshot unreadable; waiting for the control plane');
    return undefined;
  });
  let restoredFromDisk = inForce !== undefined;
  let waiting: readonly string[] = [];
  let initial;
  /** The listeners in force: a listener without a named port keeps its service port across snapshots. */
  let listeners: readonly OutboundListener[] = [];
  if (inForce !== undefined) {
    try {
      const built = buildSidecarConfig(inForce.snapshot, `${inForce.epoch}.${inForce.version}`, config);
      initial = built.config;
      waiting = built.waiting;
      listeners = built.config.listeners;
    } catch (err) {
      log.warn({ err: describeError(err) }, 'saved snapshot invalid; waiting for the control plane');
      inForce = undefined;
      restoredFromDisk = false;
    }
  }
  metrics.configStale.set(1);
  // No app port: nothing to check, and nothing is served, so the (portless) endpoint counts as healthy.
  if (config.healthCheck === null) metrics.appHealthy.set(1);
  // In transparent capture an app off loopback is checked from the hand-off source, or the rules would
  // send the check to the inbound capture port (see proxy/inbound/app-source.ts).
  const healthSpec = config.healthCheck === null || config.capture === undefined ? config.healthCheck : { ...config.healthCheck, localAddress: captureAppLocalAddress(config.healthCheck.host) };
  const health = healthSpec === null ? undefined : new AppHealth(healthSpec, (result) => {
    metrics.appHealthy.set(result.healthy ? 1 : 0);
    log.info({ healthy: result.healthy, detail: result.detail }, 'app health changed');
    // The first probe runs before the watch exists.
    if (late.watch?.connected === true) {
      void controlRequest(endpointFor(identity.current), {
        method: 'PUT',
        path: CONTROL_PATHS.endpoint(instanceId),
        body: { healthy: result.healthy, detail: result.detail },
        clientCert: identity.current as HeldIdentity,
        timeoutMs: 5_000,
      }).catch((err: unknown) => log.warn({ err: describeError(err) }, 'cannot report app health; the next registration carries it'));
    }
  });
  await health?.start();

  const running = createSidecar({
    service: config.service,
    namespace: config.namespace,
    trustDomain: held.trustDomain,
    zone: inForce?.snapshot.zone ?? config.zone ?? 'default',
    identity: held,
    appPorts: config.appPorts,
    tunnel: { address: config.tunnel.host, port: config.tunnel.port },
    admin: null,
    registry,
    logger: log,
    rootNamespace: inForce?.snapshot.rootNamespace ?? config.rootNamespace,
    accessLog: config.accessLog,
    ...(initial === undefined ? {} : { config: initial }),
    ...(config.capture === undefined ? {} : { capture: config.capture }),
  });
  late.sidecar = running;
  await running.start();
  const tunnelPort = (running.addresses().tunnel as AddressInfo).port;
  // Where other sidecars reach this one: given, the tunnel's own bind address, or else the local address
  // of a connection to the control plane, learnt on the first connect that succeeds (never guessed).
  let address: string | undefined = config.address ?? (config.tunnel.host !== '0.0.0.0' && config.tunnel.host !== '::' ? config.tunnel.host : undefined);
  if (restoredFromDisk) log.warn({ version: inForce?.version }, 'serving the config saved before this restart until the control plane answers');

  // 3. Watch and rotation.
  let lastSaved = 0;
  let saveTimer: NodeJS.Timeout | undefined;
  const saveSnapshot = (): void => {
    if (stateDir === undefined || saveTimer !== undefined) return;
    // At most one write per second: a burst of deltas must not become a burst of fsyncs.
    const delay = Math.max(0, 1_000 - (Date.now() - lastSaved));
    saveTimer = setTimeout(() => {
      saveTimer = undefined;
      lastSaved = Date.now();
      if (inForce !== undefined) void stateDir.saveSnapshot(inForce).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot save the config snapshot'));
    }, delay);
  };
  const registration = async (): Promise<Registration> => ({
    instanceId,
    ...(config.zone === undefined ? {} : { zone: config.zone }),
    address: (address ??= await localAddressTowards(config.controlUrl)),
    tunnelPort,
    ports: config.appPorts.map((p) => ({ port: p.port, protocol: p.protocol })),
    healthy: health?.healthy ?? true,
    upstreams: dedupe(config.upstreams.map((u) => ({ service: u.service, namespace: u.namespace }))),
    agentVersion: AGENT_VERSION,
    ...(Object.keys(config.labels ?? {}).length === 0 ? {} : { labels: config.labels }),
  });
  const watch: ConfigWatch = new ConfigWatch({
    endpoint: () => endpointFor(identity.current),
    clientCert: () => identity.current as HeldIdentity,
    registration,
    log,
    onConfig: (next) => {
      let built;
      try {
        built = buildSidecarConfig(next.snapshot, `${next.epoch}.${next.version}`, config, listeners);
      } catch (err) {
        metrics.configUpdates.inc({ result: 'rejected' });
        log.error({ err: describeError(err), version: next.version }, 'config from the control plane rejected; the last good config stays in force');
        return;
      }
      const current = identity.current as HeldIdentity;
      if (next.snapshot.trustBundlePem !== current.trustBundlePem && next.snapshot.trustBundlePem.length > 0) {
        // Root rotation: new sessions (tunnel, pool, control plane) trust the new roots; saved, so a restart does too.
        try {
          const updated = withTrustBundle(current, next.snapshot.trustBundlePem);
          identity.adopt(updated.identity);
          running.setIdentity(updated.identity);
          void stateDir?.saveIdentity(updated.identity).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot save the new trust bundle'));
          log.info({ roots: updated.roots }, 'trust bundle updated');
        } catch (err) {
          metrics.configUpdates.inc({ result: 'rejected' });
          log.error({ err: describeError(err) }, 'the trust bundle in force stays');
        }
      }
      for (const gone of listeners) {
        if (built.config.listeners.some((l) => l.bindAddress === gone.bindAddress && l.localPort === gone.localPort)) continue;
        // A caller's working port is going away: say so loudly, with the reason the new snapshot gives.
        const why = built.waiting.find((w) => w.startsWith(`${gone.namespace}/${gone.service} `));
        log.warn({ listener: `${gone.bindAddress}:${gone.localPort}`, upstream: `${gone.namespace}/${gone.service}`, reason: why ?? 'no longer an upstream' }, 'outbound listener closed by the new config');
      }
      listeners = built.config.listeners;
      inForce = next;
      restoredFromDisk = false;
      waiting = built.waiting;
      metrics.configStale.set(0);
      metrics.configVersion.set(next.version);
      const version = next.version;
      running.applyConfig(built.config).then(
        () => {
          // A listener that cannot bind does not fail the config (it is retried with backoff, and /ready
          // names it): "applied" is said only when every listener bound, else how many did not.
          const failing = running.listenerFailures();
          if (failing.length === 0) {
            metrics.configUpdates.inc({ result: 'applied' });
            return;
          }
          metrics.configUpdates.inc({ result: 'applied-degraded' });
          const named = failing.map((f) => `${f.spec.namespace}/${f.spec.service}:${f.spec.port} on ${f.spec.bindAddress}:${f.spec.localPort}: ${f.reason}`);
          log.warn({ version, listenersFailing: failing.length, failing: named }, `config applied with ${failing.length} outbound listener(s) failing to bind; retrying, /ready is false until they bind`);
        },
        (err: unknown) => {
          metrics.configUpdates.inc({ result: 'failed' });
          log.error({ err: describeError(err), version }, 'the new config could not be applied in full');
        },
      );
      saveSnapshot();
    },
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
  late.watch = watch;
  watch.start();
  identity.schedule();
  statusPort.view = () => {
    const now = status();
    return { ready: now.ready, reasons: now.reasons as readonly string[] };
  };

  const admin = config.admin === null ? undefined : createAgentAdminServer({
    registry,
    status,
    config: () => ({ instanceId, address, tunnelPort, service: config.service, namespace: config.namespace, version: inForce?.version, epoch: inForce?.epoch, snapshot: inForce?.snapshot }),
    certificates: () => {
      const h = identity.current;
      return h === undefined ? null : { spiffeId: h.spiffeId, notBefore: h.notBefore.toISOString(), notAfter: h.notAfter.toISOString(), certChainPem: h.certChainPem, trustBundlePem: h.trustBundlePem };
    },
  });
  if (admin !== undefined && config.admin !== null) {
    admin.listen(config.admin.port, config.admin.host);
    await once(admin, 'listening');
  }

  function status(): { ready: boolean } & Record<string, unknown> {
    const side = running.readiness();
    const reasons = [...side.reasons];
    if (inForce === undefined) reasons.push('no config from the control plane yet');
    const h = identity.current;
    return {
      ready: reasons.length === 0,
      reasons,
      spiffeId: h?.spiffeId,
      certificate: h === undefined ? undefined : { notAfter: h.notAfter.toISOString(), renewalFailures: identity.failures, lastRenewalError: identity.lastError },
      controlPlane: watch.connected
        ? { connected: true, since: watch.connectedSince?.toISOString() }
        : { connected: false, since: watch.disconnectedSince?.toISOString(), lastError: watch.lastError, servingLastConfig: inForce !== undefined },
      config: { version: inForce?.version, epoch: inForce?.epoch, stale: !watch.connected || restoredFromDisk, restoredFromDisk, waitingUpstreams: waiting, listenersFailing: running.listenerFailures().length },
      app: health === undefined ? { healthy: true, detail: 'no app port to check' } : { healthy: health.healthy, detail: health.detail },
    };
  }

  let stopping: Promise<void> | undefined;
  return {
    registry,
    addresses: () => ({ ...running.addresses(), agentAdmin: admin?.address() as AddressInfo | undefined, status: statusPort.address }),
    status,
    stop(graceMs = config.drainGraceMs) {
      stopping ??= (async () => {
        statusPort.view = () => ({ ready: false, reasons: ['stopping'] });
        identity.stop();
        health?.stop();
        clearTimeout(saveTimer);
        // Deregister first, so callers stop choosing this endpoint before its listeners stop accepting.
        try {
          await controlRequest(endpointFor(identity.current), { method: 'DELETE', path: CONTROL_PATHS.endpoint(instanceId), clientCert: identity.current as HeldIdentity, timeoutMs: 2_000 });
          log.info({ instanceId }, 'deregistered');
        } catch (err) {
          log.warn({ err: describeError(err) }, 'could not deregister (the control plane drops the endpoint when the watch closes)');
        }
        watch.stop();
        if (inForce !== undefined) await stateDir?.saveSnapshot(inForce).catch(() => undefined);
        await running.stop(graceMs);
        if (admin !== undefined) {
          const closed = new Promise((r) => admin.close(r));
          admin.closeAllConnections();
          await closed;
        }
        // Last: the kubelet keeps seeing a live process (and not-ready) while the agent drains.
        await statusPort.close();
      })();
      return stopping;
    },
  };
}

function dedupe<T extends { service: string; namespace: string }>(refs: readonly T[]): T[] {
  const seen = new Set<string>();
  return refs.filter((r) => (seen.has(`${r.namespace}/${r.service}`) ? false : (seen.add(`${r.namespace}/${r.service}`), true)));
}
