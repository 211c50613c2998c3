/**
 * A whole sidecar: the inbound tunnel server, the outbound listeners with their session pool and load
 * balancer, the admin port, and the metrics, put together behind one small API that the agent drives
 * (and `trellis proxy run` drives from a static file).
 *
 *   const sidecar = createSidecar({ service, namespace, trustDomain, zone, identity, appPorts, ... });
 *   await sidecar.start();
 *   await sidecar.applyConfig({ upstreams, listeners, policy });   // any time; atomic swap
 *   sidecar.setIdentity(renewed);                                  // rotation: new sessions use it at once
 *   await sidecar.stop(5_000);                                     // stop accepting, drain, close
 *
 * Inbound and outbound are built here and only here, so they never import each other (docs/architecture.md).
 */
import { SETTLE_AFTER_CUT_MS, TrackedSet } from './core/tracked-set.js';
import type { AddressInfo, Socket } from 'node:net';
import { Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { endpointTargetPort, type AppPort, type Endpoint, type InboundMode, type OutboundListener, type ServicePort, type UpstreamService, type WorkloadIdentity } from '../api/data-plane.js';
import { TrellisError } from '../common/errors.js';
import { silentLogger } from '../common/log.js';
import { compilePolicy } from '../policy/compiled-policy.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { resolveLimits, type ProxyLimits } from './core/limits.js';
import { LoadBalancer, type LoadBalancingStrategy } from './outbound/tunnel-client/load-balancer.js';
import { OutboundTraffic } from './outbound/traffic/outbound-traffic.js';
import { createTrafficMetrics } from './outbound/traffic/traffic-metrics.js';
import { DEFAULT_TRAFFIC, type CompiledTraffic } from '../policy/traffic/index.js';
import { createProxyMetrics, type ProxyMetrics } from './core/metrics.js';
import { createHttpMetrics, type HttpMetrics } from './http/metrics.js';
import { SessionPool, type PoolTarget } from './outbound/tunnel-client/session-pool.js';
import { buildTlsMaterial, type TlsMaterial } from './core/tls-material.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_TUNNEL_PORT } from './core/tunnel-protocol.js';
import { createInboundHttp, type InboundHttp } from './inbound/http/dispatch.js';
import { inboundState, type Authorizer, type InboundState } from './inbound/inbound-state.js';
import { TunnelServer } from './inbound/tunnel/tunnel-server.js';
import { ExplicitListeners, type ListenerFailure } from './outbound/explicit-listeners.js';
import { ConnectionBudget } from './outbound/connection-budget.js';
import { indexUpstreams, type OutboundRoute, type UpstreamIndex } from './outbound/route.js';
import { forwardTcp } from './outbound/tcp/tcp-forwarder.js';
import { resolveOutboundHttpLimits, type OutboundHttpLimits } from './outbound/http/deps.js';
import { createOutboundHttpListener, outboundHttpListenerFactory, type OutboundHttpListener } from './outbound/http/listener.js';
import { DEFAULT_LANE_POOL_LIMITS, LanePool } from './outbound/http/lane-pool.js';
import { DEFAULT_MEMORY_TRIM_INTERVAL_MS, startMemoryTrim } from './core/memory-trim.js';
import { createTransparentListener, type OutsideMeshPolicy, type TransparentListener } from './outbound/capture/transparent-listener.js';
import { createTransparentMetrics } from './outbound/capture/transparent-metrics.js';
import { createCaptureListener, type CaptureListener } from './inbound/capture/capture-listener.js';
import { appLocalAddress, HANDOFF_SOURCE } from './inbound/app-source.js';
import { createCaptureMetrics } from './inbound/capture/capture-metrics.js';
import type { OriginalDestination } from './core/original-dst.js';
import { AdminServer } from './admin.js';
import { CODE } from '../common/error-codes.js';

/**
 * Destinations (endpoint × service port) a capture-mode sidecar opens sessions to ahead of need; beyond
 * this (a mesh-wide subscription in a large mesh) they open on first use. Two sessions each by default.
 */
export const CAPTURE_WARM_LIMIT = 64;

export type { Authorizer } from './inbound/inbound-state.js';

/**
 * The local address a process beside a capture-mode sidecar (the agent's app health check) dials the app
 * at `host` from: the hand-off source the redirect rules exempt, or undefined (the kernel's choice) for a
 * loopback host. Dialled from anywhere else, a check of an app off loopback would be sent to the inbound
 * capture port (inbound/app-source.ts).
 */
export function captureAppLocalAddress(host: string): string | undefined {
  return appLocalAddress(host, HANDOFF_SOURCE);
}

/** What the control plane (or a static file) says, swapped whole by `applyConfig`. */
export interface SidecarConfig {
  /** Shown on /config and as `trellis_config_info{version}`. */
  readonly version?: string;
  readonly upstreams: readonly UpstreamService[];
  readonly listeners: readonly OutboundListener[];
  /** The compiled policy (`compilePolicy(...)`) judging inbound streams and requests. */
  readonly policy: Authorizer;
  /** Replaces the app ports given at creation, when present. */
  readonly appPorts?: readonly AppPort[];
  /** Serials (`normaliseSerial`) of peer certificates refused on the tunnel: their join token was revoked. */
  readonly revokedSerials?: ReadonlySet<string>;
  /** Routes, retries, timeouts, outlier detection, circuit breakers (`compileTraffic(...)`); absent: the defaults. */
  readonly traffic?: CompiledTraffic;
}

export interface SidecarPoolOptions {
  /** Sessions kept open per destination endpoint ahead of need (default 2). */
  readonly sessionsPerEndpoint?: number;
  /** Our bound on concurrent streams per session; another session opens when all are full (default limits.maxStreamsPerSession). */
  readonly maxStreamsPerSession?: number;
  readonly maxSessionsPerEndpoint?: number;
  readonly keepaliveIntervalMs?: number;
  readonly loadBalancing?: LoadBalancingStrategy;
}

/**
 * Transparent capture (docs/architecture.md, "Transparent capture"): the capture listeners. The iptables
 * redirect that feeds them is installed separately (`trellis agent redirect install`), and survives restarts.
 */
export interface SidecarCaptureOptions {
  /** Outbound capture listener; default 0.0.0.0:15001. */
  readonly outbound?: { readonly address?: string; readonly port?: number };
  /** Inbound capture listener; default 0.0.0.0:15006. */
  readonly inbound?: { readonly address?: string; readonly port?: number };
  /** Plaintext from outside the mesh: refused (`strict`, the default) or handed to the app (`permissive`). */
  readonly inboundMode?: InboundMode;
  /** Destinations outside the mesh: passed through (the default) or refused. */
  readonly outsideMesh?: OutsideMeshPolicy;
  /** Tests only: where a connection was going, instead of SO_ORIGINAL_DST (which needs real NAT). */
  readonly originalDst?: (socket: Socket) => OriginalDestination;
}

/** The capture listeners of one sidecar, and the HTTP listener their `http` connections are handed to. */
interface CaptureParts {
  readonly transparent: TransparentListener;
  readonly http: OutboundHttpListener;
  readonly inbound: CaptureListener;
}

export interface SidecarOptions {
  readonly service: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly zone: string;
  readonly identity: WorkloadIdentity;
  /** The app's ports, where the inbound side delivers. */
  readonly appPorts: readonly AppPort[];
  /** Tunnel listener; default 0.0.0.0:15008. Port 0 binds any free port (tests). */
  readonly tunnel?: { readonly address?: string; readonly port?: number };
  /** Admin listener; default 127.0.0.1:15000. `null`: no admin port. */
  readonly admin?: { readonly address?: string; readonly port?: number } | null;
  readonly limits?: Partial<ProxyLimits>;
  /** Limits of the outbound HTTP listeners (header bytes, timeouts, connections). */
  readonly httpLimits?: Partial<OutboundHttpLimits>;
  readonly pool?: SidecarPoolOptions;
  /** One info line per TCP stream and HTTP request (default true). */
  readonly accessLog?: boolean;
  /** How often free allocator memory is handed back to the kernel (core/memory-trim.ts); 0: never. Default 2 s. */
  readonly memoryTrimIntervalMs?: number;
  readonly logger?: Logger;
  /** Metrics land here; a fresh Registry when absent. Never the global default registry. */
  readonly registry?: Registry;
  /** Root namespace of mesh-wide policy, for the deny-all policy in force before the first config. */
  readonly rootNamespace?: string;
  /** Config in force from start; without it nothing is allowed in and nothing is routed out. */
  readonly config?: SidecarConfig;
  /** Transparent capture listeners; absent: explicit listeners only. */
  readonly capture?: SidecarCaptureOptions;
}

export interface SidecarAddresses {
  readonly tunnel: AddressInfo | undefined;
  readonly admin: AddressInfo | undefined;
  readonly listeners: readonly { readonly service: string; readonly namespace: string; readonly port: number; readonly address: AddressInfo | undefined }[];
  /** The capture listeners, when transparent capture is on. */
  readonly capture?: { readonly outbound: AddressInfo | undefined; readonly inbound: AddressInfo | undefined };
}

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

export interface Sidecar {
  readonly registry: Registry;
  readonly metrics: ProxyMetrics;
  /** Binds the tunnel, admin and outbound listeners and pre-opens sessions to known endpoints. */
  start(): Promise<void>;
  /**
   * Swaps upstreams, listeners, app ports and policy. Routing and policy switch synchronously when called
   * (open streams now denied are closed); the promise settles once listeners are rebound. A listener that
   * cannot bind does not fail it: it is retried with backoff and named by `readiness()` until it binds.
   */
  applyConfig(config: SidecarConfig): Promise<void>;
  /** New certificate or trust bundle: new sessions and handshakes use it at once; old sessions drain. */
  setIdentity(identity: WorkloadIdentity): void;
  /** Stops accepting, lets open connections finish for `graceMs`, then cuts what is left. */
  stop(graceMs?: number): Promise<void>;
  addresses(): SidecarAddresses;
  readiness(): Readiness;
  /** Explicit listeners of the config in force that could not bind (retried with backoff until they do). */
  listenerFailures(): readonly ListenerFailure[];
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
  private config: SidecarConfig;
  private upstreams: UpstreamIndex;
  private state: InboundState;
  private started = false;
  private stopped = false;
  private stopMemoryTrim: () => void = () => undefined;

  constructor(private readonly options: SidecarOptions) {
    this.registry = options.registry ?? new Registry();
    this.log = (options.logger ?? silentLogger()).child({ service: `${options.namespace}/${options.service}` });
    this.limits = resolveLimits(options.limits);
    this.material = buildTlsMaterial(options.identity);
    this.metrics = createProxyMetrics(this.registry, () => [{ spiffeId: this.material.spiffeId, notAfterMs: this.material.notAfterMs }]);
    this.httpMetrics = createHttpMetrics(this.registry);
    const denyAll = compilePolicy([], { trustDomain: options.trustDomain, rootNamespace: options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE });
    this.config = options.config ?? Object.freeze({ upstreams: [], listeners: [], policy: denyAll });
    this.upstreams = indexUpstreams(this.config.upstreams);
    const local = { service: options.service, namespace: options.namespace };
    this.state = inboundState(local, this.config.appPorts ?? options.appPorts, this.config.policy, this.config.revokedSerials);

    this.balancer = new LoadBalancer({ strategy: options.pool?.loadBalancing ?? 'least-outstanding' });
    this.balancer.setServices(this.config.upstreams);
    this.traffic = new OutboundTraffic({ metrics: createTrafficMetrics(this.registry), source: `${options.namespace}/${options.service}` });
    this.traffic.setServices(this.config.upstreams);
    this.traffic.setResources(this.config.traffic ?? DEFAULT_TRAFFIC);
    this.pool = new SessionPool({
      trustDomain: options.trustDomain,
      identity: options.identity,
      limits: this.limits,
      sessionsPerEndpoint: options.pool?.sessionsPerEndpoint,
      maxSessionsPerEndpoint: options.pool?.maxSessionsPerEndpoint,
      maxStreamsPerSession: options.pool?.maxStreamsPerSession,
      keepaliveIntervalMs: options.pool?.keepaliveIntervalMs,
      logger: this.log.child({ part: 'pool' }),
      metrics: this.metrics,
      onEndpointHealth: (key, ok) => this.balancer.reportEndpoint(key, ok),
    });
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
      identity: options.identity,
      state: this.state,
      limits: this.limits,
      metrics: this.metrics,
      logger: this.log.child({ part: 'inbound' }),
      accessLog: options.accessLog,
      appSource: options.capture === undefined ? undefined : HANDOFF_SOURCE,
      http: (stream, headers, peer, appPort, state, current) => this.inboundHttp.dispatch(stream, headers, peer, appPort, state, current),
    });
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
        track: (cut) => {
          return this.outboundConnections.add(cut);
        },
      });
    const httpDeps = {
      pool: this.pool,
      balancer: this.balancer,
      metrics: this.metrics,
      httpMetrics: this.httpMetrics,
      logger: this.log.child({ part: 'outbound-http' }),
      sourceLabel,
      accessLog,
      limits: resolveOutboundHttpLimits({ maxConnections: this.limits.maxOutboundConnections, ...options.httpLimits }),
      connections: new ConnectionBudget(this.limits.maxOutboundConnectionsTotal),
      traffic: this.traffic,
    };
    this.lanes = new LanePool(this.pool, DEFAULT_LANE_POOL_LIMITS, httpDeps.limits.upstreamIdleTimeoutMs);
    registerLaneGauge(this.registry, this.lanes, this.inboundHttp);
    const http = outboundHttpListenerFactory(httpDeps, this.lanes);
    this.listeners = new ExplicitListeners({ limits: this.limits, metrics: this.metrics, logger: outboundLog, forward, http, connections: httpDeps.connections });
    this.capture = options.capture === undefined ? undefined : this.createCapture(options.capture, forward, createOutboundHttpListener({ deps: httpDeps, lanes: this.lanes, name: 'capture' }), accessLog);
    this.admin = options.admin === null ? undefined : new AdminServer(this, this.log.child({ part: 'admin' }));
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
      await this.listeners.apply(this.config.listeners, this.upstreams);
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    this.warmPool();
    this.setConfigVersion(this.config.version);
    this.stopMemoryTrim = startMemoryTrim(this.options.memoryTrimIntervalMs ?? DEFAULT_MEMORY_TRIM_INTERVAL_MS, this.log);
    this.log.info({ tunnel: this.tunnel.address(), admin: this.admin?.address(), spiffeId: this.material.spiffeId }, 'sidecar started');
  }

  async applyConfig(config: SidecarConfig): Promise<void> {
    if (this.stopped) throw new TrellisError(CODE.PROXY_STOPPED, 'the sidecar is stopped', { side: 'internal' });
    const frozen = Object.freeze({ ...config });
    this.config = frozen;
    this.upstreams = indexUpstreams(frozen.upstreams);
    this.balancer.setServices(frozen.upstreams);
    // New requests take the new routes and settings at once; requests in flight keep the plan they have.
    this.traffic.setServices(frozen.upstreams);
    this.traffic.setResources(frozen.traffic ?? DEFAULT_TRAFFIC);
    this.capture?.transparent.setUpstreams(frozen.upstreams);
    this.capture?.inbound.setAppPorts(frozen.appPorts ?? this.options.appPorts);
    this.state = inboundState(this.state.local, frozen.appPorts ?? this.options.appPorts, frozen.policy, frozen.revokedSerials);
    const cut = this.tunnel.setState(this.state);
    this.setConfigVersion(frozen.version);
    this.log.info({ version: frozen.version, upstreams: frozen.upstreams.length, listeners: frozen.listeners.length, streamsClosedByPolicy: cut }, 'config applied');
    if (!this.started) return;
    this.warmPool();
    await this.listeners.apply(frozen.listeners, this.upstreams);
  }

  setIdentity(identity: WorkloadIdentity): void {
    const material = buildTlsMaterial(identity);
    this.tunnel.setIdentity(identity);
    this.pool.setIdentity(identity);
    this.material = material;
    this.log.info({ spiffeId: material.spiffeId, notAfter: new Date(material.notAfterMs).toISOString() }, 'workload identity updated');
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

  /** For /config: everything in force, no keys. */
  effectiveConfig(): unknown {
    const policy = this.config.policy as Authorizer & { policies?: readonly { metadata: { namespace: string; name: string } }[] };
    return {
      service: this.options.service,
      namespace: this.options.namespace,
      trustDomain: this.options.trustDomain,
      zone: this.options.zone,
      version: this.config.version ?? null,
      addresses: this.addresses(),
      appPorts: [...this.state.appPorts.values()],
      upstreams: this.config.upstreams,
      listeners: this.config.listeners,
      policies: policy.policies?.map((p) => `${p.metadata.namespace}/${p.metadata.name}`) ?? null,
      limits: this.limits,
      pool: this.pool.stats(),
      tunnelSessionsInbound: this.tunnel.sessionCount(),
    };
  }

  /** For /certs: the identity in use, never the key. */
  certificates(): unknown {
    const m = this.material;
    return {
      spiffeId: m.spiffeId,
      notAfter: new Date(m.notAfterMs).toISOString(),
      secondsToExpiry: Math.round((m.notAfterMs - Date.now()) / 1000),
      chain: m.chain.map((c) => ({ subject: c.subject, issuer: c.issuer, serialNumber: c.serialNumber, notBefore: c.validFrom, notAfter: c.validTo, fingerprint256: c.fingerprint256, subjectAltName: c.subjectAltName ?? null })),
    };
  }

  /** The capture listeners, fed by the same TCP and HTTP paths as the explicit listeners. */
  private createCapture(capture: SidecarCaptureOptions, forward: (socket: Socket, route: OutboundRoute) => void, http: OutboundHttpListener, accessLog: boolean): CaptureParts {
    // An injected reader (tests) stands in for the addon, so its availability does not matter then.
    const unavailableReason = capture.originalDst === undefined ? undefined : (): null => null;
    const transparent = createTransparentListener({
      address: capture.outbound?.address,
      port: capture.outbound?.port,
      outsideMesh: capture.outsideMesh ?? 'passthrough',
      metrics: createTransparentMetrics(this.registry),
      logger: this.log.child({ part: 'outbound-capture' }),
      accessLog,
      forwardTcp: forward,
      forwardHttp: (socket, route) => http.handleConnection(socket, route),
      originalDst: capture.originalDst,
      unavailableReason,
    });
    transparent.setUpstreams(this.config.upstreams);
    const inbound = createCaptureListener({
      address: capture.inbound?.address,
      port: capture.inbound?.port,
      mode: capture.inboundMode ?? 'strict',
      appPorts: this.config.appPorts ?? this.options.appPorts,
      metrics: createCaptureMetrics(this.registry),
      logger: this.log.child({ part: 'inbound-capture' }),
      accessLog,
      originalDst: capture.originalDst,
      unavailableReason,
    });
    return { transparent, http, inbound };
  }

  /**
   * What the session pool keeps: `warm` opened ahead of need, `onDemand` valid but opened on first use.
   * Transparent capture may reach any port of any upstream; with a mesh-wide subscription that is every
   * endpoint of the mesh, so those are opened ahead of need only while there are few of them
   * (CAPTURE_WARM_LIMIT), and on first use beyond that (one handshake, then kept like any other).
   */
  private warmPool(): void {
    const { warm, onDemand } = this.poolTargets();
    this.pool.warm(warm, onDemand);
  }

  private poolTargets(): { warm: PoolTarget[]; onDemand: PoolTarget[] } {
    const warm: PoolTarget[] = [];
    const seen = new Set<string>();
    const add = (list: PoolTarget[], keys: Set<string>, endpoint: Endpoint, upstream: UpstreamService, port: ServicePort): void => {
      // The session for the endpoint's own app port (what SNI names): instances may listen on different ones.
      const targetPort = endpointTargetPort(endpoint, port.port, port.targetPort);
      if (targetPort === undefined) return;
      const key = `${endpoint.address}:${endpoint.tunnelPort}/${upstream.name}.${upstream.namespace}:${targetPort}`;
      if (keys.has(key)) return;
      keys.add(key);
      list.push({ endpoint, service: upstream.name, namespace: upstream.namespace, port: targetPort });
    };
    let captured: PoolTarget[] = [];
    if (this.capture !== undefined) {
      const capturedKeys = new Set<string>();
      for (const upstream of this.config.upstreams) {
        for (const port of upstream.ports) for (const endpoint of upstream.endpoints) add(captured, capturedKeys, endpoint, upstream, port);
      }
      if (captured.length <= CAPTURE_WARM_LIMIT) {
        for (const t of captured) seen.add(`${t.endpoint.address}:${t.endpoint.tunnelPort}/${t.service}.${t.namespace}:${t.port}`);
        warm.push(...captured);
        captured = [];
      }
    }
    for (const l of this.config.listeners) {
      const upstream = this.upstreams.get(`${l.service}.${l.namespace}`);
      const port = upstream?.ports.find((p) => p.port === l.port);
      if (upstream === undefined || port === undefined) continue;
      for (const endpoint of upstream.endpoints) add(warm, seen, endpoint, upstream, port);
    }
    return { warm, onDemand: captured };
  }

  private setConfigVersion(version: string | undefined): void {
    this.metrics.configVersion.reset();
    this.metrics.configVersion.set({ version: version ?? 'none' }, 1);
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
