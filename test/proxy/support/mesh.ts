/**
 * Test fixtures for the proxy: real sidecars on port 0 with real certificates from the test PKI, an echo
 * app, and helpers to talk through an outbound listener. Everything made here is closed by `close()`.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, beforeAll } from 'vitest';
import type { AppPort, WorkloadIdentity } from '../../../api/data-plane.js';
import { compilePolicy } from '../../../policy/compiled-policy.js';
import type { TrafficPermission } from '../../../policy/types.js';
import { createSidecar, type Sidecar, type SidecarConfig, type SidecarPoolOptions } from '../../../proxy/sidecar.js';
import { resolveLimits, type ProxyLimits } from '../../../proxy/core/limits.js';
import { createProxyMetrics } from '../../../proxy/core/metrics.js';
import { SessionPool, type SessionPoolOptions } from '../../../proxy/outbound/tunnel-client/session-pool.js';
import { silentLogger, type Logger } from '../../../common/log.js';
import { createTestPki, type TestPki } from '../../helpers/pki.js';

export const TRUST_DOMAIN = 'cluster.local';

export function allow(destination: string, from: string[], name = `allow-${destination}`, namespace = 'shop'): TrafficPermission {
  return {
    apiVersion: 'trellis.dev/v1alpha1',
    kind: 'TrafficPermission',
    metadata: { name, namespace },
    spec: { destination, mode: 'enforce', rules: [{ action: 'allow', from }] },
  };
}

export function policyOf(...policies: TrafficPermission[]): SidecarConfig['policy'] {
  return compilePolicy(policies, { trustDomain: TRUST_DOMAIN, rootNamespace: 'trellis-system' });
}

/** An app that echoes every byte and half-closes when the caller does. */
export async function echoServer(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

export async function closeServer(server: Server, sockets?: Set<Socket>): Promise<void> {
  for (const s of sockets ?? []) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
}

export interface MeshFixture {
  /** The test PKI, made once before the file's first test (read it inside a test or hook, not at load). */
  readonly pki: TestPki;
  /** Run after each test, also when it fails, last pushed first (a client stops before its server). */
  readonly cleanup: (() => Promise<void>)[];
  /** An echo app that is closed after the current test. */
  echo(): Promise<Awaited<ReturnType<typeof echoServer>>>;
}

/** The per-file setup of tunnel tests; call once at the top level of a test file, as it registers the hooks. */
export function meshFixture(): MeshFixture {
  let pki: TestPki | undefined;
  const cleanup: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    pki = await createTestPki();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  return {
    get pki(): TestPki {
      if (pki === undefined) throw new Error('meshFixture: the test PKI is made in beforeAll; read it inside a test');
      return pki;
    },
    cleanup,
    async echo() {
      const app = await echoServer();
      cleanup.push(() => closeServer(app.server, app.sockets));
      return app;
    },
  };
}

export interface ServerSidecarSpec {
  identity: WorkloadIdentity;
  appPorts: AppPort[];
  policy: SidecarConfig['policy'];
  limits?: Partial<ProxyLimits>;
  service?: string;
  /** Default: silent (or debug to stdout with PROXY_DEBUG). */
  logger?: Logger;
}

export async function startServerSidecar(spec: ServerSidecarSpec): Promise<Sidecar> {
  const sidecar = createSidecar({
    service: spec.service ?? 'api',
    namespace: 'shop',
    trustDomain: TRUST_DOMAIN,
    zone: 'zone-a',
    identity: spec.identity,
    appPorts: spec.appPorts,
    tunnel: { address: '127.0.0.1', port: 0 },
    admin: { address: '127.0.0.1', port: 0 },
    limits: spec.limits,
    logger: spec.logger ?? (process.env.PROXY_DEBUG ? (await import("pino")).pino({ level: "debug" }) : silentLogger()),
    registry: new Registry(),
    config: { upstreams: [], listeners: [], policy: spec.policy },
  });
  await sidecar.start();
  return sidecar;
}

/** A client sidecar `web` with one listener to api.shop:80 → targetPort over the given tunnel ports. */
export async function startClientSidecar(identity: WorkloadIdentity, tunnelPorts: number[], targetPort: number, extra: { limits?: Partial<ProxyLimits>; policy?: SidecarConfig['policy']; pool?: SidecarPoolOptions; protocol?: 'tcp' | 'http' } = {}): Promise<Sidecar> {
  const sidecar = createSidecar({
    service: 'web',
    namespace: 'shop',
    trustDomain: TRUST_DOMAIN,
    zone: 'zone-a',
    identity,
    appPorts: [],
    tunnel: { address: '127.0.0.1', port: 0 },
    admin: null,
    limits: extra.limits,
    pool: extra.pool,
    logger: process.env.PROXY_DEBUG ? (await import("pino")).pino({ level: "debug" }) : silentLogger(),
    registry: new Registry(),
    config: clientConfig(tunnelPorts, targetPort, extra.policy ?? policyOf(), extra.protocol),
  });
  await sidecar.start();
  return sidecar;
}

export function clientConfig(tunnelPorts: number[], targetPort: number, policy: SidecarConfig['policy'], protocol: 'tcp' | 'http' = 'tcp'): SidecarConfig {
  return {
    upstreams: [
      {
        name: 'api',
        namespace: 'shop',
        ports: [{ port: 80, targetPort, protocol }],
        endpoints: tunnelPorts.map((p) => ({ address: '127.0.0.1', tunnelPort: p, zone: 'zone-a', healthy: true })),
      },
    ],
    listeners: [{ bindAddress: '127.0.0.1', localPort: 0, service: 'api', namespace: 'shop', port: 80 }],
    policy,
  };
}

export function listenerPort(sidecar: Sidecar): number {
  const port = sidecar.addresses().listeners[0]?.address?.port;
  if (port === undefined) throw new Error('no listener bound');
  return port;
}

/** Connects, sends `payload`, half-closes, and collects everything until the peer closes. */
export function roundTrip(port: number, payload: Buffer | string): Promise<{ data: Buffer; error?: Error }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let error: Error | undefined;
    socket.on('connect', () => socket.end(payload));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => {
      error = err;
    });
    socket.on('close', () => resolve({ data: Buffer.concat(chunks), ...(error === undefined ? {} : { error }) }));
  });
}

export async function metricValue(sidecar: Sidecar, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await sidecar.registry.getSingleMetric(name)?.get();
  let total = 0;
  for (const v of metric?.values ?? []) {
    if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) total += v.value;
  }
  return total;
}

/** A client sidecar `web` of zone east whose only endpoint of api.shop:80 is "via the ingress at `ingressPort`" (zone `zone`). */
export async function startViaIngressClient(identity: WorkloadIdentity, targetPort: number, ingressPort: number, zone: string, trustDomain = TRUST_DOMAIN): Promise<Sidecar> {
  const sidecar = createSidecar({
    service: 'web',
    namespace: 'shop',
    trustDomain,
    zone: 'east',
    identity,
    appPorts: [],
    tunnel: { address: '127.0.0.1', port: 0 },
    admin: null,
    logger: silentLogger(),
    registry: new Registry(),
    config: {
      upstreams: [{ name: 'api', namespace: 'shop', ports: [{ port: 80, targetPort, protocol: 'tcp' }], endpoints: [{ address: '127.0.0.1', tunnelPort: ingressPort, zone, healthy: true, ingress: { address: '127.0.0.1', port: ingressPort } }] }],
      listeners: [{ bindAddress: '127.0.0.1', localPort: 0, service: 'api', namespace: 'shop', port: 80 }],
      policy: compilePolicy([], { trustDomain, rootNamespace: 'trellis-system' }),
    },
  });
  await sidecar.start();
  return sidecar;
}

/** A tunnel session pool as `shop/web`, with the default limits and its own metrics; `extra` overrides pool options. */
export async function testPool(pki: TestPki, extra: Partial<SessionPoolOptions> = {}): Promise<SessionPool> {
  return new SessionPool({
    trustDomain: pki.trustDomain,
    identity: await pki.issue('web', 'shop'),
    limits: resolveLimits(),
    logger: silentLogger(),
    metrics: createProxyMetrics(new Registry()),
    ...extra,
  });
}
