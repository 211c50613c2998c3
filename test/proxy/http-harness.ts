/**
 * A small mesh on loopback for the HTTP path's integration tests, with real TLS 1.3 mTLS and certificates
 * from the CA module (test/helpers/pki.ts):
 *
 *   app (curl-like client) → outbound HTTP listener → SessionPool (core) → tunnel (h2 server here)
 *     → inbound HTTP dispatch → kept-alive HTTP/1.1 → destination app(s)
 *
 * The tunnel server here is deliberately minimal (mTLS, SPIFFE check, route every stream of an `http` app
 * port, CONNECT included, to the HTTP path): these tests are about the HTTP path, not the tunnel server.
 * Everything binds port 0 on 127.0.0.1; `close()` releases every socket and server.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Registry } from 'prom-client';
import { pino, type Logger } from 'pino';
import type { AppHttpOptions, AppPort, Endpoint } from '../../api/data-plane.js';
import { compilePolicy } from '../../policy/compiled-policy.js';
import { parsePolicyFiles } from '../../policy/validator.js';
import type { Authorizer } from '../../proxy/inbound/inbound-state.js';
import { inboundState } from '../../proxy/inbound/inbound-state.js';
import { parseAuthority } from '../../proxy/core/destination.js';
import { createHttpMetrics, type HttpMetrics } from '../../proxy/http/metrics.js';
import { resolveLimits } from '../../proxy/core/limits.js';
import { LoadBalancer } from '../../proxy/outbound/tunnel-client/load-balancer.js';
import { createProxyMetrics, type ProxyMetrics } from '../../proxy/core/metrics.js';
import { checkPeer } from '../../proxy/core/peer-identity.js';
import { SessionPool } from '../../proxy/outbound/tunnel-client/session-pool.js';
import { buildTlsMaterial } from '../../proxy/core/tls-material.js';
import { TARGET_HEADER, TUNNEL_ALPN } from '../../proxy/core/tunnel-protocol.js';
import { createInboundHttp, type InboundHttp } from '../../proxy/inbound/http/dispatch.js';
import type { AppPoolLimits } from '../../proxy/inbound/http/app-pool.js';
import { resolveOutboundHttpLimits, type OutboundHttpLimits } from '../../proxy/outbound/http/deps.js';
import { createOutboundHttpListener, type OutboundHttpListener } from '../../proxy/outbound/http/listener.js';
import { createOutboundHttp2Server } from '../../proxy/outbound/http2/app-server.js';
import type { OutboundHttpDeps } from '../../proxy/outbound/http/deps.js';
import { DEFAULT_LIMITS } from '../../proxy/core/limits.js';
import { DEFAULT_LANE_POOL_LIMITS, LanePool } from '../../proxy/outbound/http/lane-pool.js';
import type { OutboundRoute } from '../../proxy/outbound/route.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { OutboundTraffic } from '../../proxy/outbound/traffic/outbound-traffic.js';
import { createTrafficMetrics } from '../../proxy/outbound/traffic/traffic-metrics.js';
import { compileTraffic, parseTrafficFiles } from '../../policy/traffic/index.js';
import { startByteRecorder, type ByteRecorder } from './support/byte-recorder.js';

export const POLICY_YAML = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: deny
      from: [orders]
      http: { paths: ["/admin/*"] }
    - action: deny
      from: [orders]
      http: { methods: [DELETE], paths: ["/items/*"] }
    - action: allow
      from: [orders]
`;

/** "web may GET /public and /public/*" (POST too, so bodies are allowed). */
export const PUBLIC_ONLY_POLICY = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: public-only, namespace: shop }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: allow
      from: [orders]
      http: { methods: [GET, POST], paths: ["/public", "/public/*"] }
`;

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** A pino logger whose lines land in an array, so tests can assert on denials and access lines. */
export function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(chunk: string): void {
        lines.push(JSON.parse(chunk) as LogLine);
      },
    },
  );
  return { logger, lines };
}

export type AppHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface TestApp {
  readonly server: Server;
  readonly port: number;
  /** Connections the app accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connections: number;
  readonly sockets: Set<Socket>;
}

export async function startApp(handler: AppHandler): Promise<TestApp> {
  const server = createHttpServer(handler);
  const app: TestApp = { server, port: 0, connections: 0, sockets: new Set() };
  server.on('connection', (socket: Socket) => {
    app.connections += 1;
    app.sockets.add(socket);
    socket.once('close', () => app.sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (app as { port: number }).port = (server.address() as AddressInfo).port;
  return app;
}

export interface TestTunnel {
  readonly server: Http2SecureServer;
  readonly port: number;
  readonly inbound: InboundHttp;
  readonly metrics: ProxyMetrics;
  readonly httpMetrics: HttpMetrics;
  readonly registry: Registry;
  readonly sessions: Set<ServerHttp2Session>;
  close(): Promise<void>;
}

export interface TunnelOptions {
  readonly pki: TestPki;
  /** The app this tunnel delivers to; requests name it as port `ROUTE.targetPort`. */
  readonly appPort: AppPort;
  readonly policy: Authorizer;
  readonly logger: Logger;
  readonly appPool?: Partial<AppPoolLimits>;
  readonly laneHeadTimeoutMs?: number;
}

/** The destination sidecar's tunnel port, serving `payments.shop` with one `http` app port. */
export async function startTunnel(options: TunnelOptions): Promise<TestTunnel> {
  const identity = await options.pki.issue('payments', 'shop');
  const material = buildTlsMaterial(identity);
  const registry = new Registry();
  const metrics = createProxyMetrics(registry);
  const httpMetrics = createHttpMetrics(registry);
  const inbound = createInboundHttp({ metrics, httpMetrics, logger: options.logger, appPool: options.appPool, laneHeadTimeoutMs: options.laneHeadTimeoutMs });
  const state = inboundState({ service: 'payments', namespace: 'shop' }, [options.appPort], options.policy);
  const limits = resolveLimits();
  const server = createSecureServer({
    ...material.options,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: [TUNNEL_ALPN],
    settings: { initialWindowSize: limits.streamWindowBytes, maxConcurrentStreams: limits.maxStreamsPerSession },
  });
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session: ServerHttp2Session) => {
    const check = checkPeer(session.socket as unknown as TLSSocket, options.pki.trustDomain);
    if (!check.ok) {
      session.destroy();
      return;
    }
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => undefined);
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', () => undefined);
      const target = headers[':method'] === 'CONNECT' ? headers[':authority'] : headers[TARGET_HEADER];
      const destination = parseAuthority(typeof target === 'string' ? target : undefined);
      const appPort = destination?.port === ROUTE.targetPort ? options.appPort : undefined;
      if (appPort === undefined) {
        stream.respond({ ':status': 404 });
        stream.end();
        return;
      }
      inbound.dispatch(stream, headers, check.peer, appPort, state);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    inbound,
    metrics,
    httpMetrics,
    registry,
    sessions,
    async close(): Promise<void> {
      for (const s of sessions) s.destroy();
      inbound.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export function endpointOf(port: number): Endpoint {
  return { address: '127.0.0.1', tunnelPort: port, zone: 'test', healthy: true };
}

export interface TestMesh {
  readonly pki: TestPki;
  readonly apps: TestApp[];
  /** With `recordBytes`: what each app was sent, byte for byte (parallel to `apps`). */
  readonly recorders: ByteRecorder[];
  readonly tunnels: TestTunnel[];
  readonly balancer: LoadBalancer;
  readonly pool: SessionPool;
  /** The outbound side's lanes (undefined with `lanes: false`). */
  readonly lanes: LanePool | undefined;
  readonly outbound: OutboundHttpListener;
  readonly outboundPort: number;
  readonly registry: Registry;
  readonly log: LogLine[];
  readonly inboundLog: LogLine[];
  /** Replaces the endpoints the balancer (and traffic management) knows for payments.shop. */
  setEndpoints(endpoints: readonly Endpoint[]): void;
  /** Traffic management of the outbound side, with `traffic` (YAML) in force; undefined without it. */
  readonly traffic: OutboundTraffic | undefined;
  /** Replaces the traffic resources in force (YAML), as a config push does. */
  setTraffic(yaml: string): void;
  close(): Promise<void>;
}

export interface MeshOptions {
  /** One destination workload (app + tunnel) per handler. */
  readonly apps: readonly AppHandler[];
  readonly policyYaml?: string;
  readonly outboundLimits?: Partial<OutboundHttpLimits>;
  /** The outbound HTTP fast path over lanes (the sidecar's default); false: every request through node:http. */
  readonly lanes?: boolean;
  readonly appPool?: Partial<AppPoolLimits>;
  /** The destination's total deadline for a request head on a lane. */
  readonly laneHeadTimeoutMs?: number;
  /** Extra endpoints (e.g. a closed port) offered to the balancer besides the live ones. */
  readonly extraEndpoints?: readonly Endpoint[];
  readonly pki?: TestPki;
  /** The app port's HTTP options (upgrade protocols, escaped slashes) at the inbound side. */
  readonly appHttp?: AppHttpOptions;
  /** Put a byte recorder (support/byte-recorder.ts) between each inbound sidecar and its app. */
  readonly recordBytes?: boolean;
  /** Traffic resources (YAML) for the outbound side; with it, traffic management runs (defaults for an empty string). */
  readonly traffic?: string;
  /** Labels of each app's endpoint (parallel to `apps`). */
  readonly labels?: readonly Readonly<Record<string, string>>[];
}

export const ROUTE: OutboundRoute = Object.freeze({ service: 'payments', namespace: 'shop', servicePort: 80, targetPort: 8080, protocol: 'http' });

export async function startMesh(options: MeshOptions): Promise<TestMesh> {
  const pki = options.pki ?? (await createTestPki());
  const policy = compilePolicy(parsePolicyFiles([{ path: 'policy.yaml', text: options.policyYaml ?? POLICY_YAML }]), {
    trustDomain: pki.trustDomain,
    rootNamespace: 'trellis-system',
  });
  const inboundCapture = captureLogger();
  const outboundCapture = captureLogger();
  const apps: TestApp[] = [];
  const recorders: ByteRecorder[] = [];
  const tunnels: TestTunnel[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  try {
    for (const handler of options.apps) {
      const app = await startApp(handler);
      apps.push(app);
      cleanups.push(() => closeApp(app));
      let port = app.port;
      if (options.recordBytes === true) {
        const recorder = await startByteRecorder(app.port);
        recorders.push(recorder);
        cleanups.push(() => recorder.close());
        port = recorder.port;
      }
      const appPort: AppPort = { port, protocol: 'http', host: '127.0.0.1', ...(options.appHttp === undefined ? {} : { http: options.appHttp }) };
      const tunnel = await startTunnel({ pki, appPort, policy, logger: inboundCapture.logger, appPool: options.appPool, laneHeadTimeoutMs: options.laneHeadTimeoutMs });
      tunnels.push(tunnel);
      cleanups.push(() => tunnel.close());
    }
    const registry = new Registry();
    const metrics = createProxyMetrics(registry);
    const httpMetrics = createHttpMetrics(registry);
    const balancer = new LoadBalancer();
    const endpoints = [...tunnels.map((t, i) => ({ ...endpointOf(t.port), ...(options.labels?.[i] === undefined ? {} : { labels: options.labels[i] }) })), ...(options.extraEndpoints ?? [])];
    const traffic = options.traffic === undefined ? undefined : new OutboundTraffic({ metrics: createTrafficMetrics(registry), source: 'shop/orders' });
    const setTraffic = (yaml: string): void => traffic?.setResources(compileTraffic(parseTrafficFiles([{ path: 'traffic.yaml', text: yaml }])));
    if (options.traffic !== undefined) setTraffic(options.traffic);
    const setEndpoints = (list: readonly Endpoint[]): void => {
      const services = [{ name: 'payments', namespace: 'shop', ports: [], endpoints: list }];
      balancer.setServices(services);
      traffic?.setServices(services);
    };
    setEndpoints(endpoints);
    const callerIdentity = await pki.issue('orders', 'shop');
    const pool = new SessionPool({
      trustDomain: pki.trustDomain,
      identity: callerIdentity,
      limits: resolveLimits({ tunnelConnectTimeoutMs: 2_000 }),
      sessionsPerEndpoint: 1,
      logger: outboundCapture.logger,
      metrics,
      onEndpointHealth: (key, ok) => balancer.reportEndpoint(key, ok),
    });
    cleanups.push(() => pool.close(100));
    const outboundLimits = resolveOutboundHttpLimits(options.outboundLimits);
    const lanes = options.lanes === false ? undefined : new LanePool(pool, DEFAULT_LANE_POOL_LIMITS, outboundLimits.upstreamIdleTimeoutMs);
    if (lanes !== undefined) cleanups.push(async () => lanes.close());
    const outboundDeps: OutboundHttpDeps = {
      pool,
      balancer,
      metrics,
      httpMetrics,
      logger: outboundCapture.logger,
      sourceLabel: 'shop/orders',
      accessLog: true,
      limits: outboundLimits,
      ...(traffic === undefined ? {} : { traffic }),
    };
    // HTTP/2 apps (prior knowledge) are served as the sidecar serves them.
    const http2 = createOutboundHttp2Server(outboundDeps, DEFAULT_LIMITS);
    const outbound = createOutboundHttpListener({ resolve: () => ROUTE, lanes, http2, deps: outboundDeps });
    const address = await outbound.listen(0, '127.0.0.1');
    cleanups.push(() => outbound.close(0));
    return {
      pki,
      apps,
      recorders,
      tunnels,
      balancer,
      pool,
      lanes,
      outbound,
      outboundPort: address.port,
      registry,
      log: outboundCapture.lines,
      inboundLog: inboundCapture.lines,
      setEndpoints,
      traffic,
      setTraffic,
      async close(): Promise<void> {
        for (const c of cleanups.reverse()) await c();
      },
    };
  } catch (err) {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    throw err;
  }
}

export async function closeApp(app: TestApp): Promise<void> {
  for (const s of app.sockets) s.destroy();
  await new Promise<void>((resolve) => app.server.close(() => resolve()));
}
