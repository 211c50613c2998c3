/**
 * Outbound transparent capture over real loopback sockets. The original destination is handed in by the
 * test (here no iptables rewrites anything; test/e2e/capture-*.test.ts does it for real in network
 * namespaces): what is tested is what the listener does with it, passthrough splices included.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { UpstreamService } from '../../api/data-plane.js';
import { TrellisError } from '../../common/errors.js';
import type { OriginalDestination } from '../../proxy/core/original-dst.js';
import type { OutboundRoute } from '../../proxy/outbound/route.js';
import { createTransparentListener, type TransparentListener, type TransparentListenerOptions } from '../../proxy/outbound/capture/transparent-listener.js';
import { createTransparentMetrics } from '../../proxy/outbound/capture/transparent-metrics.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const orders: UpstreamService = {
  name: 'orders',
  namespace: 'shop',
  ports: [
    { port: 80, targetPort: 8080, protocol: 'http' },
    { port: 6379, targetPort: 6379, protocol: 'tcp' },
  ],
  endpoints: [{ address: '10.1.0.5', tunnelPort: 15008, zone: 'z', healthy: true }],
  virtualIps: ['10.96.0.10'],
};

async function echoServer(): Promise<{ port: number; server: Server; connections: () => number }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    connections += 1;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, server, connections: () => connections };
}

interface Harness {
  listener: TransparentListener;
  port: number;
  registry: Registry;
  logs: Record<string, unknown>[];
  tcp: OutboundRoute[];
  http: OutboundRoute[];
  /** The original destination the next accepted connection reports (or the error it throws). */
  next: { dst: OriginalDestination | Error };
}

async function start(overrides: Partial<TransparentListenerOptions> = {}): Promise<Harness> {
  const registry = new Registry();
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const tcp: OutboundRoute[] = [];
  const http: OutboundRoute[] = [];
  const next: Harness['next'] = { dst: new TrellisError('TRELLIS_CAPTURE_NOT_REDIRECTED', 'not set') };
  const listener = createTransparentListener({
    address: '127.0.0.1',
    port: 0,
    outsideMesh: 'passthrough',
    metrics: createTransparentMetrics(registry),
    logger: pino({ level: 'info' }, sink),
    accessLog: true,
    // Stand-ins for the mesh paths: they answer with the route they were given, so the test sees the hand-off.
    forwardTcp: (socket, route) => {
      tcp.push(route);
      socket.end(`tcp ${route.namespace}/${route.service}:${route.targetPort}`);
    },
    forwardHttp: (socket, route) => {
      http.push(route);
      socket.end(`http ${route.namespace}/${route.service}:${route.targetPort}`);
    },
    originalDst: () => {
      if (next.dst instanceof Error) throw next.dst;
      return next.dst;
    },
    unavailableReason: () => null,
    ...overrides,
  });
  const bound = await listener.listen();
  cleanup.push(() => listener.close(0));
  listener.setUpstreams([orders]);
  return { listener, port: bound.port, registry, logs, tcp, http, next };
}

function exchange(port: number, payload: string): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    let data = '';
    let error: string | undefined;
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('connect', () => socket.end(payload));
    socket.on('data', (c: Buffer) => (data += c.toString()));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    socket.on('close', () => resolve(error === undefined ? { data } : { data, error }));
  });
}

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  let total = 0;
  for (const v of metric?.values ?? []) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) total += v.value;
  return total;
}

const dst = (address: string, port: number): OriginalDestination => ({ address, port, family: address.includes(':') ? 6 : 4 });

describe('outbound transparent listener', () => {
  it('hands a mesh destination to the TCP or HTTP path with the route its address and port name', async () => {
    const h = await start();
    h.next.dst = dst('10.96.0.10', 6379);
    expect(await exchange(h.port, 'x')).toEqual({ data: 'tcp shop/orders:6379' });
    h.next.dst = dst('10.96.0.10', 80);
    expect(await exchange(h.port, 'x')).toEqual({ data: 'http shop/orders:8080' });
    h.next.dst = dst('10.1.0.5', 8080);
    expect(await exchange(h.port, 'x')).toEqual({ data: 'http shop/orders:8080' });
    expect(h.tcp).toHaveLength(1);
    expect(h.http.map((r) => r.servicePort)).toEqual([80, 80]);
    expect(await counter(h.registry, 'trellis_capture_outbound_connections_total', { result: 'mesh', destination: 'shop/orders' })).toBe(3);
  });

  it('carries http ports as TCP when no HTTP path is given', async () => {
    const h = await start({ forwardHttp: undefined });
    h.next.dst = dst('10.96.0.10', 80);
    expect(await exchange(h.port, 'x')).toEqual({ data: 'tcp shop/orders:8080' });
  });

  it('passes a destination outside the mesh through untouched, both ways with half-close, counted and logged', async () => {
    const h = await start();
    const outside = await echoServer();
    h.next.dst = dst('127.0.0.1', outside.port);
    const payload = 'x'.repeat(200_000);
    const result = await exchange(h.port, payload);
    expect(result.error).toBeUndefined();
    expect(result.data.length).toBe(payload.length);
    expect(outside.connections()).toBe(1);
    expect(h.tcp.length + h.http.length).toBe(0);
    expect(await counter(h.registry, 'trellis_capture_outbound_connections_total', { result: 'passthrough' })).toBe(1);
    await expect.poll(() => counter(h.registry, 'trellis_capture_passthrough_bytes_total', { flow: 'to_destination' })).toBe(200_000);
    expect(await counter(h.registry, 'trellis_capture_passthrough_bytes_total', { flow: 'to_source' })).toBe(200_000);
    await expect.poll(() => h.logs.find((l) => l.msg === 'tcp passthrough')).toMatchObject({ destination: `127.0.0.1:${outside.port}`, result: 'ok', bytesToDestination: 200_000 });
  });

  it('refuses a destination outside the mesh when only mesh destinations are allowed', async () => {
    const h = await start({ outsideMesh: 'refuse' });
    const outside = await echoServer();
    h.next.dst = dst('127.0.0.1', outside.port);
    const result = await exchange(h.port, 'hello');
    expect(result.data).toBe('');
    expect(result.error).toBe('ECONNRESET');
    expect(outside.connections()).toBe(0);
    expect(await counter(h.registry, 'trellis_capture_outbound_connections_total', { result: 'refused-outside-mesh' })).toBe(1);
    expect(h.logs.find((l) => l.result === 'refused-outside-mesh')).toMatchObject({ level: 40, destination: `127.0.0.1:${outside.port}` });
    // And back: the policy applies to new connections.
    h.listener.setOutsideMesh('passthrough');
    expect(await exchange(h.port, 'hello')).toEqual({ data: 'hello' });
  });

  it('refuses a connection made to the capture port itself, never dialling itself', async () => {
    const h = await start();
    h.next.dst = new TrellisError('TRELLIS_CAPTURE_NOT_REDIRECTED', 'no original destination', { side: 'downstream' });
    const result = await exchange(h.port, 'loop?');
    expect(result).toEqual({ data: '', error: 'ECONNRESET' });
    expect(await counter(h.registry, 'trellis_capture_outbound_connections_total', { result: 'not-redirected' })).toBe(1);
    expect(h.logs.find((l) => l.result === 'not-redirected')).toMatchObject({ code: 'TRELLIS_CAPTURE_NOT_REDIRECTED' });
    h.next.dst = new Error('EBADF');
    expect((await exchange(h.port, 'x')).error).toBe('ECONNRESET');
    expect(await counter(h.registry, 'trellis_capture_outbound_connections_total', { result: 'original-dst-failed' })).toBe(1);
  });

  it('resets the app when a passthrough destination refuses, as the destination itself would', async () => {
    const h = await start();
    const closed = await echoServer();
    await new Promise<void>((r) => closed.server.close(() => r()));
    h.next.dst = dst('127.0.0.1', closed.port);
    expect((await exchange(h.port, 'x')).error).toBe('ECONNRESET');
    expect(await counter(h.registry, 'trellis_capture_outbound_connections_total', { result: 'passthrough-failed' })).toBe(1);
    expect(h.logs.find((l) => l.code === 'ECONNREFUSED')).toBeDefined();
  });

  it('routes by the config in force when the connection arrives', async () => {
    const h = await start();
    const outside = await echoServer();
    h.next.dst = dst('127.0.0.1', outside.port);
    expect(await exchange(h.port, 'before')).toEqual({ data: 'before' });
    h.listener.setUpstreams([{ name: 'cache', namespace: 'shop', ports: [{ port: outside.port, targetPort: outside.port, protocol: 'tcp' }], endpoints: [{ address: '127.0.0.1', tunnelPort: 15008, zone: 'z', healthy: true }] }]);
    expect(await exchange(h.port, 'after')).toEqual({ data: `tcp shop/cache:${outside.port}` });
    h.listener.setUpstreams([]);
    expect(await exchange(h.port, 'outside again')).toEqual({ data: 'outside again' });
  });

  it('resets connections over its limit', async () => {
    const h = await start({ limits: { maxConnections: 1 } });
    const outside = await echoServer();
    h.next.dst = dst('127.0.0.1', outside.port);
    const held = connect({ port: h.port, host: '127.0.0.1' });
    held.on('error', () => undefined);
    cleanup.push(() => void held.destroy());
    await expect.poll(() => outside.connections()).toBe(1);
    expect((await exchange(h.port, 'x')).error).toBe('ECONNRESET');
    expect(await counter(h.registry, 'trellis_capture_outbound_connections_total', { result: 'max-connections' })).toBe(1);
  });

  it('cuts passthrough connections still open after the grace period on close', async () => {
    const h = await start();
    const outside = await echoServer();
    h.next.dst = dst('127.0.0.1', outside.port);
    const held = connect({ port: h.port, host: '127.0.0.1' });
    const closed = new Promise<string>((r) => {
      held.on('error', (err: NodeJS.ErrnoException) => r(err.code ?? 'error'));
      held.on('close', () => r('closed'));
    });
    await expect.poll(() => outside.connections()).toBe(1);
    await h.listener.close(50);
    expect(await closed).toBe('ECONNRESET');
    await expect.poll(() => h.logs.find((l) => l.msg === 'tcp passthrough')).toMatchObject({ result: 'cut' });
  });

  it('will not listen when original destinations cannot be read, and says why', async () => {
    const listener = createTransparentListener({
      port: 0,
      outsideMesh: 'passthrough',
      metrics: createTransparentMetrics(new Registry()),
      logger: pino({ level: 'silent' }),
      accessLog: false,
      forwardTcp: () => undefined,
      unavailableReason: () => 'the original-destination addon build/Release/original_dst.node is missing',
    });
    await expect(listener.listen()).rejects.toMatchObject({ code: 'TRELLIS_CAPTURE_UNAVAILABLE', message: expect.stringContaining('original_dst.node is missing') });
  });
});
