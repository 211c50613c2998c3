/**
 * A whole sidecar, assembled: the inbound tunnel server, the outbound listeners with their session pool and
 * load balancer, the admin port, and the metrics, put together behind one small API (sidecar-api.ts) that
 * the agent drives (and `trellis proxy run` drives from a static file).
 *
 *   const sidecar = createSidecar({ service, namespace, trustDomain, zone, identity, appPorts, ... });
 *   await sidecar.start();
 *   await sidecar.applyConfig({ upstreams, listeners, policy });   // any time; atomic swap
 *   sidecar.setIdentity(renewed);                                  // rotation: new sessions use it at once
 *   await sidecar.stop(5_000);                                     // stop accepting, drain, close
 *
 * Inbound and outbound are built here and only here, so they never import each other (docs/architecture.md).
 * What is not wiring has its own file: the config swap (sidecar-config-swap.ts), the sessions the pool keeps
 * (pool-targets.ts), capture (sidecar-capture.ts) and the admin views (admin-views.ts).
 */
import { SETTLE_AFTER_CUT_MS, TrackedSet } from './core/tracked-set.js';
import type { Socket } from 'node:net';
import { Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { WorkloadIdentity } from '../api/data-plane.js';
import { TrellisError } from '../common/errors.js';
import { silentLogger } from '../common/log.js';
import { resolveLimits, type ProxyLimits } from './core/limits.js';
import { LoadBalancer } from './outbound/tunnel-client/load-balancer.js';
import { OutboundTraffic } from './outbound/traffic/outbound-traffic.js';
import { createTrafficMetrics } from './outbound/traffic/traffic-metrics.js';
import { DEFAULT_TRAFFIC } from '../policy/traffic/index.js';
import { createProxyMetrics, type ProxyMetrics } from './core/metrics.js';
import { createHttpMetrics, type HttpMetrics } from './http/metrics.js';
import { SessionPool } from './outbound/tunnel-client/session-pool.js';
import { buildTlsMaterial, type TlsMaterial } from './core/tls-material.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_TUNNEL_PORT } from './core/tunnel-protocol.js';
import { createInboundHttp, type InboundHttp } from './inbound/http/dispatch.js';
import { TunnelServer } from './inbound/tunnel/tunnel-server.js';
import { ExplicitListeners, type ListenerFailure } from './outbound/explicit-listeners.js';
import { ConnectionBudget } from './outbound/connection-budget.js';
import type { OutboundRoute } from './outbound/route.js';
import { forwardTcp } from './outbound/tcp/tcp-forwarder.js';
import { resolveOutboundHttpLimits, type OutboundHttpDeps } from './outbound/http/deps.js';
import { createOutboundHttpListener, outboundHttpListenerFactory } from './outbound/http/listener.js';
import { createOutboundHttp2Server } from './outbound/http2/app-server.js';
import { DEFAULT_LANE_POOL_LIMITS, LanePool } from './outbound/http/lane-pool.js';
import { DEFAULT_MEMORY_TRIM_INTERVAL_MS, startMemoryTrim } from './core/memory-trim.js';
import { appLocalAddress, HANDOFF_SOURCE } from './inbound/app-source.js';
import { AdminServer } from './admin.js';
import { CODE } from '../common/error-codes.js';
import type { Readiness, Sidecar, SidecarAddresses, SidecarConfig, SidecarOptions } from './sidecar-api.js';
import { initialConfig, setConfigVersion, swapConfig, type ConfigInForce } from './sidecar-config-swap.js';
import { poolTargets } from './pool-targets.js';
import { createCaptureParts, type CaptureParts } from './sidecar-capture.js';
import { certificatesView, effectiveConfigView } from './admin-views.js';

export type { Authorizer } from './inbound/inbound-state.js';
export type { Readiness, Sidecar, SidecarAddresses, SidecarCaptureOptions, SidecarConfig, SidecarOptions, SidecarPoolOptions } from './sidecar-api.js';
export { CAPTURE_WARM_LIMIT } from './pool-targets.js';

/**
 * The local address a process beside a capture-mode sidecar (the agent's app health check) dials the app
 * at `host` from: the hand-off source the redirect rules exempt, or undefined (the kernel's choice) for a
 * loopback host. Dialled from anywhere else, a check of an app off loopback would be sent to the inbound
 * capture port (inbound/app-source.ts).
 */
export function captureAppLocalAddress(host: string): string | undefined {
  return appLocalAddress(host, HANDOFF_SOURCE);
}

/** `identity` with exactly `bundles` as its federated set. */
function withFederation(identity: WorkloadIdentity, bundles: Readonly<Record<string, string>> | undefined): WorkloadIdentity {
  const { certChainPem, keyPem, trustBundlePem } = identity;
  return Object.freeze({ certChainPem, keyPem, trustBundlePem, federatedBundles: bundles ?? {} });
}

function sameBundles(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>> | undefined): boolean {
  const other = b ?? {};
  const keys = Object.keys(a);
  return keys.length === Object.keys(other).length && keys.every((k) => a[k] === other[k]);
}

export function createSidecar(options: SidecarOptions): Sidecar {
  return new TrellisSidecar(options);
}

class TrellisSidecar implements Sidecar {
  readonly registry: Registry;
  readonly metrics: ProxyMetrics;
  private readonly httpMetrics: HttpMetrics;
  private readonly limits: ProxyLimits;
  private readonly log: Logger;
  private readonly balancer: LoadBalancer;
  private readonly pool: SessionPool;
  /** Kept-alive HTTP/1.1 lanes to other sidecars (the outbound HTTP fast path). */
  private readonly lanes: LanePool;
  private readonly tunnel: TunnelServer;
  private readonly listeners: ExplicitListeners;
  private readonly admin: AdminServer | undefined;
  private readonly inboundHttp: InboundHttp;
  private readonly outboundConnections = new TrackedSet<() => void>();
  /** Traffic management of every outbound HTTP request (proxy/outbound/traffic/). */
  private readonly traffic: OutboundTraffic;
  private readonly capture: CaptureParts | undefined;
  private material: TlsMaterial;
  /** The identity in force with the federated bundles of the config in force (what tunnel and pool use). */
  private identity: WorkloadIdentity;
  private current: ConfigInForce;
  private started = false;
  private stopped = false;
  private stopMemoryTrim: () => void = () => undefined;

  constructor(private readonly options: SidecarOptions) {
    this.registry = options.registry ?? new Registry();
    this.log = (options.logger ?? silentLogger()).child({ service: `${options.namespace}/${options.service}` });
    this.limits = resolveLimits(options.limits);
    this.identity = withFederation(options.identity, options.config?.federatedBundles ?? options.identity.federatedBundles);
    this.material = buildTlsMaterial(this.identity);
    this.metrics = createProxyMetrics(this.registry, () => [{ spiffeId: this.material.spiffeId, notAfterMs: this.material.notAfterMs }]);
    this.httpMetrics = createHttpMetrics(this.registry);
    this.current = initialConfig(options);
    // Locality on by default: this zone first, then any other, spilling under half the usual healthy count.
    this.balancer = new LoadBalancer({ strategy: options.pool?.loadBalancing ?? 'least-outstanding', locality: { zone: options.zone, ...(options.subzone === undefined ? {} : { subzone: options.subzone }), ...options.pool?.failover } });
    this.balancer.setServices(this.current.config.upstreams);
    this.balancer.setFailover(this.current.config.traffic?.failover, this.current.config.zone);
    this.traffic = new OutboundTraffic({ metrics: createTrafficMetrics(this.registry), source: `${options.namespace}/${options.service}` });
    this.traffic.setServices(this.current.config.upstreams);
    this.traffic.setResources(this.current.config.traffic ?? DEFAULT_TRAFFIC);
    this.pool = this.createPool();
    this.inboundHttp = createInboundHttp({
      metrics: this.metrics,
      httpMetrics: this.httpMetrics,
      logger: this.log.child({ part: 'inbound-http' }),
      accessLog: options.accessLog ?? true,
      track: (entry) => this.tunnel.track(entry),
      appSource: options.capture === undefined ? undefined : HANDOFF_SOURCE,
      laneHeadTimeoutMs: this.limits.laneHeadTimeoutMs,
    });
    this.tunnel = new TunnelServer({
      trustDomain: options.trustDomain,
      identity: this.identity,
      state: this.current.state,
      limits: this.limits,
      metrics: this.metrics,
      logger: this.log.child({ part: 'inbound' }),
      accessLog: options.accessLog,
      appSource: options.capture === undefined ? undefined : HANDOFF_SOURCE,
      http: (stream, headers, peer, appPort, state, current) => this.inboundHttp.dispatch(stream, headers, peer, appPort, state, current),
    });
    const outbound = this.assembleOutbound();
    this.lanes = outbound.lanes;
    this.listeners = outbound.listeners;
    this.capture = outbound.capture;
    registerLaneGauge(this.registry, this.lanes, this.inboundHttp);
    this.admin = options.admin === null ? undefined : new AdminServer(this, this.log.child({ part: 'admin' }));
  }

  private createPool(): SessionPool {
    const pool = this.options.pool;
    return new SessionPool({
      trustDomain: this.options.trustDomain,
      identity: this.identity,
      limits: this.limits,
      sessionsPerEndpoint: pool?.sessionsPerEndpoint,
      maxSessionsPerEndpoint: pool?.maxSessionsPerEndpoint,
      maxStreamsPerSession: pool?.maxStreamsPerSession,
      keepaliveIntervalMs: pool?.keepaliveIntervalMs,
      logger: this.log.child({ part: 'pool' }),
      metrics: this.metrics,
      onEndpointHealth: (key, ok) => this.balancer.reportEndpoint(key, ok),
    });
  }

  /** The outbound side: the TCP path, the HTTP path with its lanes, the explicit listeners and capture. */
  private assembleOutbound(): { lanes: LanePool; listeners: ExplicitListeners; capture: CaptureParts | undefined } {
    const { options } = this;
    const accessLog = options.accessLog ?? true;
    const sourceLabel = `${options.namespace}/${options.service}`;
    const outboundLog = this.log.child({ part: 'outbound' });
    const forward = (socket: Socket, route: OutboundRoute): void =>
      forwardTcp(socket, route, {
        pool: this.pool,
        balancer: this.balancer,
        limits: this.limits,
        metrics: this.metrics,
        logger: outboundLog,
        sourceLabel,
        accessLog,
        traffic: this.traffic,
        track: (cut) => this.outboundConnections.add(cut),
      });
    const connections = new ConnectionBudget(this.limits.maxOutboundConnectionsTotal);
    const httpDeps: OutboundHttpDeps = {
      pool: this.pool,
      balancer: this.balancer,
      metrics: this.metrics,
      httpMetrics: this.httpMetrics,
      logger: this.log.child({ part: 'outbound-http' }),
      sourceLabel,
      accessLog,
      limits: resolveOutboundHttpLimits({ maxConnections: this.limits.maxOutboundConnections, ...options.httpLimits }),
      connections,
      traffic: this.traffic,
    };
    const lanes = new LanePool(this.pool, DEFAULT_LANE_POOL_LIMITS, httpDeps.limits.upstreamIdleTimeoutMs);
    const http2 = createOutboundHttp2Server(httpDeps, this.limits);
    const http = outboundHttpListenerFactory(httpDeps, lanes, http2);
    const listeners = new ExplicitListeners({ limits: this.limits, metrics: this.metrics, logger: outboundLog, forward, http, connections });
    const capture =
      options.capture === undefined
        ? undefined
        : createCaptureParts({
            capture: options.capture,
            registry: this.registry,
            log: this.log,
            accessLog,
            upstreams: this.current.config.upstreams,
            appPorts: this.current.config.appPorts ?? options.appPorts,
            forwardTcp: forward,
            http: createOutboundHttpListener({ deps: httpDeps, lanes, http2, name: 'capture' }),
          });
    return { lanes, listeners, capture };
  }

  async start(): Promise<void> {
    if (this.started) throw new TrellisError(CODE.PROXY_ALREADY_STARTED, 'the sidecar was already started', { side: 'internal' });
    this.started = true;
    this.traffic.startSweeps();
    const tunnel = this.options.tunnel ?? {};
    try {
      await this.tunnel.listen(tunnel.port ?? DEFAULT_TUNNEL_PORT, tunnel.address ?? '0.0.0.0');
      if (this.admin !== undefined) {
        const admin = this.options.admin ?? {};
        await this.admin.listen(admin.port ?? DEFAULT_ADMIN_PORT, admin.address ?? '127.0.0.1');
      }
      if (this.capture !== undefined) {
        await this.capture.transparent.listen();
        await this.capture.inbound.listen();
      }
      await this.listeners.apply(this.current.config.listeners, this.current.upstreams);
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    this.warmPool();
    setConfigVersion(this.metrics, this.current.config.version);
    this.stopMemoryTrim = startMemoryTrim(this.options.memoryTrimIntervalMs ?? DEFAULT_MEMORY_TRIM_INTERVAL_MS, this.log);
    this.log.info({ tunnel: this.tunnel.address(), admin: this.admin?.address(), spiffeId: this.material.spiffeId }, 'sidecar started');
  }

  async applyConfig(config: SidecarConfig): Promise<void> {
    if (this.stopped) throw new TrellisError(CODE.PROXY_STOPPED, 'the sidecar is stopped', { side: 'internal' });
    // Built before anything is swapped: bundles that cannot be used reject the whole config.
    const federated = config.federatedBundles === undefined || sameBundles(config.federatedBundles, this.identity.federatedBundles) ? undefined : withFederation(this.identity, config.federatedBundles);
    const federatedMaterial = federated === undefined ? undefined : buildTlsMaterial(federated);
    this.current = swapConfig(this.current, config, this.options.appPorts, { balancer: this.balancer, traffic: this.traffic, tunnel: this.tunnel, capture: this.capture, metrics: this.metrics, log: this.log });
    if (federated !== undefined && federatedMaterial !== undefined) this.useIdentity(federated, federatedMaterial);
    if (!this.started) return;
    this.warmPool();
    await this.listeners.apply(this.current.config.listeners, this.current.upstreams);
  }

  /** A renewed identity (or a new trust bundle); the federated bundles in force stay unless it brings its own. */
  setIdentity(identity: WorkloadIdentity): void {
    const merged = withFederation(identity, identity.federatedBundles ?? this.identity.federatedBundles);
    this.useIdentity(merged, buildTlsMaterial(merged));
    this.log.info({ spiffeId: this.material.spiffeId, notAfter: new Date(this.material.notAfterMs).toISOString() }, 'workload identity updated');
  }

  private useIdentity(identity: WorkloadIdentity, material: TlsMaterial): void {
    const before = Object.keys(this.identity.federatedBundles ?? {}).sort().join(',');
    this.tunnel.setIdentity(identity);
    this.pool.setIdentity(identity);
    this.identity = identity;
    this.material = material;
    const after = Object.keys(identity.federatedBundles ?? {}).sort().join(',');
    if (before !== after) this.log.info({ federatedTrustDomains: after === '' ? [] : after.split(',') }, 'federated trust domains changed');
  }

  async stop(graceMs = 5_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopMemoryTrim();
    const deadline = setTimeout(() => {
      for (const cut of this.outboundConnections.snapshot()) cut();
    }, graceMs);
    // Idle lanes both ways close now, so tunnel sessions can finish; busy ones after their exchange.
    this.lanes.close();
    this.traffic.close();
    this.inboundHttp.drainLanes();
    // Listeners stop accepting at once; sessions and streams already open get the grace period.
    await Promise.all([
      this.listeners.close(graceMs),
      this.tunnel.close(graceMs),
      this.pool.close(graceMs),
      this.capture?.transparent.close(graceMs),
      this.capture?.http.close(graceMs),
      this.capture?.inbound.close(graceMs),
    ]);
    clearTimeout(deadline);
    for (const cut of this.outboundConnections.snapshot()) cut();
    if (!(await this.outboundConnections.whenEmpty(SETTLE_AFTER_CUT_MS))) this.log.warn({ open: this.outboundConnections.size }, 'outbound connections still open after shutdown');
    this.inboundHttp.close();
    await this.admin?.close();
    this.log.info('sidecar stopped');
  }

  addresses(): SidecarAddresses {
    return {
      tunnel: this.tunnel.address(),
      admin: this.admin?.address(),
      listeners: this.listeners.addresses().map((l) => ({ service: l.spec.service, namespace: l.spec.namespace, port: l.spec.port, address: l.address })),
      ...(this.capture === undefined ? {} : { capture: { outbound: this.capture.transparent.address(), inbound: this.capture.inbound.address() } }),
    };
  }

  listenerFailures(): readonly ListenerFailure[] {
    return this.listeners.failures();
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (!this.started || this.stopped) reasons.push(this.stopped ? 'stopped' : 'not started');
    if (this.tunnel.address() === undefined) reasons.push('tunnel port not bound');
    if (this.capture !== undefined && (this.capture.transparent.address() === undefined || this.capture.inbound.address() === undefined)) reasons.push('capture ports not bound');
    for (const f of this.listeners.failures()) reasons.push(`outbound listener ${f.spec.namespace}/${f.spec.service}:${f.spec.port} not bound: ${f.reason}`);
    if (this.material.notAfterMs <= Date.now()) reasons.push(`workload certificate expired at ${new Date(this.material.notAfterMs).toISOString()}`);
    return { ready: reasons.length === 0, reasons };
  }

  /** For /config (admin-views.ts). */
  effectiveConfig(): unknown {
    return effectiveConfigView({
      options: this.options,
      config: this.current.config,
      appPorts: this.current.state.appPorts.values(),
      addresses: this.addresses(),
      limits: this.limits,
      poolStats: this.pool.stats(),
      tunnelSessionsInbound: this.tunnel.sessionCount(),
    });
  }

  /** For /certs (admin-views.ts). */
  certificates(): unknown {
    return certificatesView(this.material);
  }

  /** The sessions the pool keeps for the config in force (pool-targets.ts). */
  private warmPool(): void {
    const { warm, onDemand } = poolTargets(this.current.config, this.current.upstreams, this.capture !== undefined);
    this.pool.warm(warm, onDemand);
  }
}

/** `trellis_http_lanes`: read at scrape time from the lane pools, so nothing is counted per request. */
function registerLaneGauge(registry: Registry, outbound: LanePool, inbound: InboundHttp): void {
  new Gauge({
    name: 'trellis_http_lanes',
    help: 'HTTP/1.1 lanes between sidecars: outbound open and idle (kept for reuse), inbound open.',
    labelNames: ['direction', 'state'] as const,
    registers: [registry],
    collect(): void {
      this.set({ direction: 'outbound', state: 'open' }, outbound.openCount());
      this.set({ direction: 'outbound', state: 'idle' }, outbound.idleCount());
      this.set({ direction: 'inbound', state: 'open' }, inbound.laneCount());
    },
  });
}
