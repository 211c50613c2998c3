/**
 * Inbound capture over real loopback sockets: strict refuses, permissive hands the caller to the app.
 * The original destination is handed in by the test; test/e2e/capture-*.test.ts runs it behind real
 * iptables rules in network namespaces.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { TrellisError } from '../../common/errors.js';
import type { OriginalDestination } from '../../proxy/core/original-dst.js';
import { createCaptureListener, type CaptureListener, type CaptureListenerOptions } from '../../proxy/inbound/capture/capture-listener.js';
import { createCaptureMetrics } from '../../proxy/inbound/capture/capture-metrics.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** An app that answers `app:<port> <what it read>` once the caller half-closes, and records callers' addresses. */
async function app(): Promise<{ port: number; server: Server; callers: string[] }> {
  const callers: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    callers.push(s.remoteAddress ?? '');
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let read = '';
    s.on('data', (c: Buffer) => (read += c.toString()));
    s.on('end', () => s.end(`app:${(server.address() as AddressInfo).port} ${read}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, server, callers };
}

interface Harness {
  listener: CaptureListener;
  port: number;
  registry: Registry;
  logs: Record<string, unknown>[];
  next: { dst: OriginalDestination | Error };
}

async function start(overrides: Partial<CaptureListenerOptions> = {}): Promise<Harness> {
  const registry = new Registry();
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const next: Harness['next'] = { dst: new TrellisError('TRELLIS_CAPTURE_NOT_REDIRECTED', 'not set') };
  const listener = createCaptureListener({
    address: '127.0.0.1',
    port: 0,
    mode: 'strict',
    appPorts: [],
    metrics: createCaptureMetrics(registry),
    logger: pino({ level: 'info' }, sink),
    accessLog: true,
    originalDst: () => {
      if (next.dst instanceof Error) throw next.dst;
      return next.dst;
    },
    unavailableReason: () => null,
    ...overrides,
  });
  const bound = await listener.listen();
  cleanup.push(() => listener.close(0));
  return { listener, port: bound.port, registry, logs, next };
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

async function counter(registry: Registry, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric('trellis_capture_inbound_connections_total')?.get();
  let total = 0;
  for (const v of metric?.values ?? []) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) total += v.value;
  return total;
}

describe('inbound capture', () => {
  it('refuses plaintext from outside the mesh in strict mode, before the app sees anything, counted and logged', async () => {
    const target = await app();
    const h = await start({ mode: 'strict', appPorts: [{ port: target.port, protocol: 'tcp', host: '127.0.0.1' }] });
    h.next.dst = { address: '127.0.0.1', port: target.port, family: 4 };
    expect(await exchange(h.port, 'GET / HTTP/1.0\r\n\r\n')).toEqual({ data: '', error: 'ECONNRESET' });
    expect(target.callers).toEqual([]);
    expect(await counter(h.registry, { mode: 'strict', result: 'refused' })).toBe(1);
    expect(h.logs.find((l) => l.msg === 'plaintext connection from outside the mesh refused (inbound mode strict)')).toMatchObject({ level: 40, port: target.port, caller: expect.stringMatching(/^(::ffff:)?127\.0\.0\.1:\d+$/) });
  });

  it('hands plaintext to the app at the port it was dialled on in permissive mode, counted and logged', async () => {
    const target = await app();
    const h = await start({ mode: 'permissive', appPorts: [{ port: target.port, protocol: 'http', host: '127.0.0.1' }] });
    h.next.dst = { address: '127.0.0.1', port: target.port, family: 4 };
    expect(await exchange(h.port, 'hello')).toEqual({ data: `app:${target.port} hello` });
    expect(await counter(h.registry, { mode: 'permissive', result: 'passed' })).toBe(1);
    await expect.poll(() => h.logs.find((l) => l.msg === 'tcp from outside the mesh')).toMatchObject({ port: target.port, result: 'ok', bytesToDestination: 5 });
    expect(Number((await h.registry.getSingleMetric('trellis_capture_inbound_bytes_total')?.get())?.values.find((v) => v.labels.flow === 'to_source')?.value)).toBe(`app:${target.port} hello`.length);
  });

  it('hands a port the config does not declare to the original destination itself', async () => {
    const target = await app();
    const h = await start({ mode: 'permissive' });
    h.next.dst = { address: '127.0.0.1', port: target.port, family: 4 };
    expect(await exchange(h.port, 'undeclared')).toEqual({ data: `app:${target.port} undeclared` });
  });

  it('dials a loopback app from an ordinary source (loopback is never captured; the hand-off source is for the workload address, see test/e2e)', async () => {
    const target = await app();
    const h = await start({ mode: 'permissive', appPorts: [{ port: target.port, protocol: 'tcp', host: '127.0.0.1' }], handoffSource: { v4: '127.0.0.7', v6: '::6' } });
    h.next.dst = { address: '198.18.0.99', port: target.port, family: 4 };
    expect((await exchange(h.port, 'x')).data).toBe(`app:${target.port} x`);
    expect(target.callers).toEqual(['127.0.0.1']);
  });

  it('resets the caller when the app does not accept, counted as app-unreachable', async () => {
    const target = await app();
    await new Promise<void>((r) => target.server.close(() => r()));
    const h = await start({ mode: 'permissive' });
    h.next.dst = { address: '127.0.0.1', port: target.port, family: 4 };
    expect((await exchange(h.port, 'x')).error).toBe('ECONNRESET');
    expect(await counter(h.registry, { mode: 'permissive', result: 'app-unreachable' })).toBe(1);
    expect(h.logs.find((l) => l.code === 'ECONNREFUSED')).toBeDefined();
  });

  it('refuses a connection made to the capture port itself', async () => {
    const h = await start({ mode: 'permissive' });
    h.next.dst = new TrellisError('TRELLIS_CAPTURE_NOT_REDIRECTED', 'no original destination', { side: 'downstream' });
    expect((await exchange(h.port, 'x')).error).toBe('ECONNRESET');
    expect(await counter(h.registry, { result: 'not-redirected' })).toBe(1);
  });

  it('switches mode for new connections', async () => {
    const target = await app();
    const h = await start({ mode: 'permissive' });
    h.next.dst = { address: '127.0.0.1', port: target.port, family: 4 };
    expect((await exchange(h.port, 'a')).data).toBe(`app:${target.port} a`);
    h.listener.setMode('strict');
    expect((await exchange(h.port, 'b')).error).toBe('ECONNRESET');
    expect(await counter(h.registry, { mode: 'strict', result: 'refused' })).toBe(1);
  });

  it('cuts handed-off connections still open after the grace period on close', async () => {
    const target = await app();
    const h = await start({ mode: 'permissive' });
    h.next.dst = { address: '127.0.0.1', port: target.port, family: 4 };
    const held = connect({ port: h.port, host: '127.0.0.1' });
    const closed = new Promise<string>((r) => {
      held.on('error', (err: NodeJS.ErrnoException) => r(err.code ?? 'error'));
      held.on('close', () => r('closed'));
    });
    await expect.poll(() => target.callers.length).toBe(1);
    await h.listener.close(50);
    expect(await closed).toBe('ECONNRESET');
  });

  it('will not listen when original destinations cannot be read', async () => {
    const listener = createCaptureListener({ port: 0, mode: 'strict', appPorts: [], metrics: createCaptureMetrics(new Registry()), logger: pino({ level: 'silent' }), accessLog: false, unavailableReason: () => 'not Linux' });
    await expect(listener.listen()).rejects.toMatchObject({ code: 'TRELLIS_CAPTURE_UNAVAILABLE' });
  });
});
