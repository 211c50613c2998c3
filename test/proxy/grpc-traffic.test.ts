/**
 * Traffic management on the app-facing HTTP/2 and gRPC path, with real `@grpc/grpc-js` clients and servers
 * and node:http2 where the wire must be seen: a weighted split by version measured over many calls, a
 * header-match A/B with header edits, a blue-green flip under load, retries on UNAVAILABLE (body replayed,
 * within its bound), per-try, request and `grpc-timeout` deadlines, outlier ejection and circuit-breaker
 * overflow.
 */
import { connect, type IncomingHttpHeaders } from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { echoClient, echoImplementation, loadEcho, startEchoServer, startMesh, unary, type EchoMsg, type EchoPackage, type Mesh } from './support/grpc-mesh.js';
import { metricSum, trafficResource } from './support/traffic-resources.js';

type Client = ReturnType<typeof echoClient>;
const echo: EchoPackage = loadEcho();

const resource = (kind: string, spec: string): string => trafficResource(kind, 'echo', spec);

const weights = (v1: number, v2: number): string =>
  resource('TrafficRoute', `  rules:\n    - backends: [{ labels: { version: v1 }, weight: ${v1} }, { labels: { version: v2 }, weight: ${v2} }]\n`);

/** An instance whose every call fails with `code` before any metadata (a Trailers-Only answer); `calls` counts them. */
async function startFailingServer(code: grpc.status, delayMs = 0): Promise<{ server: grpc.Server; port: number; calls: { unary: number; stream: number } }> {
  const calls = { unary: 0, stream: 0 };
  const server = new grpc.Server();
  const failure = { code, details: 'instance is down' };
  server.addService(echo.Echo.service, {
    ...echoImplementation('bad'),
    Unary(_call: grpc.ServerUnaryCall<EchoMsg, EchoMsg>, callback: grpc.sendUnaryData<EchoMsg>): void {
      calls.unary += 1;
      setTimeout(() => callback(failure), delayMs);
    },
    ClientStream(call: grpc.ServerReadableStream<EchoMsg, EchoMsg>, callback: grpc.sendUnaryData<EchoMsg>): void {
      calls.stream += 1;
      call.on('data', () => undefined);
      call.on('end', () => callback(failure));
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))));
  return { server, port, calls };
}

/** An instance that answers every unary call after `delayMs`. */
async function startSlowServer(delayMs: number): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  const impl = echoImplementation('slow');
  server.addService(echo.Echo.service, {
    ...impl,
    Unary(call: grpc.ServerUnaryCall<EchoMsg, EchoMsg>, callback: grpc.sendUnaryData<EchoMsg>): void {
      setTimeout(() => callback(null, { text: 'slow', instance: 'slow' }), delayMs).unref();
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))));
  return { server, port };
}

function metric(mesh: Mesh, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricSum(mesh.registry, name, labels);
}

/** `count` unary calls, `concurrency` at a time. */
async function calls(client: Client, count: number, concurrency: number, options: { metadata?: () => grpc.Metadata; msg?: EchoMsg } = {}): Promise<Awaited<ReturnType<typeof unary>>[]> {
  const out: Awaited<ReturnType<typeof unary>>[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      out.push(await unary(client, options.msg ?? { text: 'x' }, options.metadata === undefined ? {} : { metadata: options.metadata() }));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

function clientStream(client: Client, messages: number, size: number): Promise<{ err: grpc.ServiceError | null; reply?: EchoMsg }> {
  return new Promise((resolve) => {
    const call = (client.ClientStream as (cb: (err: grpc.ServiceError | null, r?: EchoMsg) => void) => grpc.ClientWritableStream<EchoMsg>)((err, reply) => resolve({ err, reply }));
    for (let i = 0; i < messages; i++) call.write({ data: Buffer.alloc(size, i) });
    call.end();
  });
}

/** One gRPC-framed unary call over node:http2 (the wire seen as it is): the response head and trailers. */
function rawCall(port: number, headers: Record<string, string>): Promise<{ head: IncomingHttpHeaders; trailers: IncomingHttpHeaders | undefined; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': '/trellis.test.Echo/Unary', 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    req.on('response', (h) => (head = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', () => undefined);
    req.on('close', () => {
      session.close();
      resolve({ head, trailers, ms: performance.now() - started });
    });
    // An empty message: 5-byte gRPC frame header, length 0.
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

const servers: grpc.Server[] = [];
let mesh: Mesh | undefined;
let client: Client | undefined;

async function start(ports: readonly number[], traffic: string, labels?: readonly Record<string, string>[]): Promise<{ mesh: Mesh; client: Client }> {
  mesh = await startMesh({ appPorts: ports, protocol: 'grpc', traffic, ...(labels === undefined ? {} : { labels }) });
  client = echoClient(echo, mesh.listenerPort);
  return { mesh, client };
}

async function echoServer(name: string): Promise<number> {
  const s = await startEchoServer(name, echo);
  servers.push(s.server);
  return s.port;
}

afterEach(async () => {
  client?.close();
  client = undefined;
  await mesh?.close();
  mesh = undefined;
  for (const s of servers.splice(0)) s.forceShutdown();
});

describe('routes on the gRPC path', () => {
  it('splits 90/10 by version within ±3% over 1,000 calls, then routes by header (A/B) with header edits', async () => {
    const { mesh: m, client: c } = await start([await echoServer('v1'), await echoServer('v2')], weights(90, 10), [{ version: 'v1' }, { version: 'v2' }]);
    const replies = await calls(c, 1_000, 16);
    expect(replies.filter((r) => r.err !== undefined)).toEqual([]);
    const v2 = replies.filter((r) => r.reply?.instance === 'v2').length;
    expect(Math.abs(v2 / 1_000 - 0.1)).toBeLessThanOrEqual(0.03);
    expect(await metric(m, 'trellis_route_requests_total', { version: 'v2', route: 'echo-trafficroute/0' })).toBe(v2);

    await m.setTraffic(
      resource('TrafficRoute', `  rules:\n    - name: beta\n      match: { headers: [{ name: x-beta, exact: "1" }] }\n      backends: [{ labels: { version: v2 } }]\n      requestHeaders: { set: { x-caller: beta } }\n    - backends: [{ labels: { version: v1 } }]\n`),
    );
    const beta = (): grpc.Metadata => {
      const md = new grpc.Metadata();
      md.set('x-beta', '1');
      return md;
    };
    const marked = await calls(c, 60, 6, { metadata: beta });
    const plain = await calls(c, 60, 6);
    expect(marked.map((r) => `${r.reply?.instance} ${r.reply?.text}`)).toEqual(Array(60).fill('v2 x caller=beta'));
    expect(plain.map((r) => `${r.reply?.instance} ${r.reply?.text}`)).toEqual(Array(60).fill('v1 x'));
  }, 60_000);

  it('flips blue-green and changes weights under steady load without a failed call', async () => {
    const { mesh: m, client: c } = await start([await echoServer('v1'), await echoServer('v2')], weights(100, 0), [{ version: 'v1' }, { version: 'v2' }]);
    const running = calls(c, 1_500, 16);
    for (const [a, b] of [[90, 10], [50, 50], [0, 100], [100, 0], [0, 100]] as const) {
      await new Promise((r) => setTimeout(r, 50));
      await m.setTraffic(weights(a, b));
    }
    const during = await running;
    expect(during.filter((r) => r.err !== undefined)).toEqual([]);
    const after = await calls(c, 100, 8);
    expect(after.every((r) => r.reply?.instance === 'v2')).toBe(true);
  }, 60_000);
});

// Outlier detection is kept from ejecting the failing instance here, and the breaker allows more than the
// default 3 concurrent retries (a third of 6 concurrent calls retry at once): the retries are what is measured.
const KEEP_FAILING = `${resource('OutlierDetection', '  consecutive5xx: 1000\n  consecutiveGatewayErrors: 1000\n')}${resource('CircuitBreaker', '  maxRetries: 100\n')}`;
const RETRY_UNAVAILABLE = `${resource('RetryPolicy', '  attempts: 3\n  grpcStatuses: [unavailable]\n  backoff: { base: 1ms, max: 5ms }\n  budget: { ratio: 1, minPerSecond: 100 }\n')}${KEEP_FAILING}`;

describe('retries on the gRPC path', () => {
  it('retries UNAVAILABLE elsewhere (client-streaming bodies replayed); without the policy the caller sees it', async () => {
    const bad = await startFailingServer(grpc.status.UNAVAILABLE);
    servers.push(bad.server);
    const { mesh: m, client: c } = await start([bad.port, await echoServer('i1'), await echoServer('i2')], RETRY_UNAVAILABLE);
    const replies = await calls(c, 90, 6);
    expect(replies.filter((r) => r.err !== undefined)).toEqual([]);
    expect(bad.calls.unary).toBeGreaterThan(0);
    expect(await metric(m, 'trellis_route_retries_total', { reason: 'grpc-status' })).toBe(bad.calls.unary);
    // 20 KB bodies are kept and sent again to the next instance.
    const uploads = await Promise.all(Array.from({ length: 15 }, () => clientStream(c, 20, 1000)));
    expect(uploads.map((u) => u.reply?.text)).toEqual(Array(15).fill('got 20 messages, 20000 bytes'));
    expect(bad.calls.stream).toBeGreaterThan(0);
    // 100 KB bodies outgrow the replay bound: a call that met the failing instance fails, no other.
    const before = bad.calls.stream;
    const large = [];
    for (let i = 0; i < 15; i++) large.push(await clientStream(c, 100, 1000));
    const failed = large.filter((u) => u.err !== null);
    expect(failed.length).toBe(bad.calls.stream - before);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect(f.err?.code).toBe(grpc.status.UNAVAILABLE);

    await m.setTraffic(KEEP_FAILING);
    const plain = await calls(c, 30, 3);
    expect(plain.filter((r) => r.err?.code === grpc.status.UNAVAILABLE).length).toBeGreaterThan(0);
  }, 60_000);

  it('gives up on a slow instance after the per-try timeout and retries elsewhere', async () => {
    const slow = await startSlowServer(10_000);
    servers.push(slow.server);
    // A per-try timeout with room for a loaded machine (the suite runs beside other work on two cores).
    const { mesh: m, client: c } = await start(
      [slow.port, await echoServer('fast')],
      resource('RetryPolicy', '  attempts: 3\n  perTryTimeout: 600ms\n  retryOn: [gateway-error]\n  nonIdempotent: true\n  backoff: { base: 1ms, max: 2ms }\n'),
    );
    // Warm both instances' sessions and app connections (streams are fast on both), so the tries measured
    // are the calls, not a loaded machine's first handshakes.
    await Promise.all(
      Array.from({ length: 8 }, () => new Promise<void>((resolve) => {
        const stream = (c.ServerStream as (msg: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ text: 'w', count: 1 });
        stream.on('data', () => undefined);
        stream.on('error', () => undefined);
        stream.on('status', () => resolve());
      })),
    );
    const started = performance.now();
    const replies = await calls(c, 12, 4);
    expect(replies.map((r) => r.reply?.instance ?? r.err?.details)).toEqual(Array(12).fill('fast'));
    // Without the per-try timeout a call that met the slow instance would take its 10 s.
    expect(performance.now() - started).toBeLessThan(8_000);
    expect(await metric(m, 'trellis_route_retries_total', { reason: 'per-try-timeout' })).toBeGreaterThan(0);
  }, 30_000);

  it('never retries a sent gRPC call on a gateway error unless the policy says nonIdempotent (every call is a POST)', async () => {
    const slow = await startSlowServer(3_000);
    servers.push(slow.server);
    const { client: c } = await start([slow.port], resource('RetryPolicy', '  attempts: 2\n  perTryTimeout: 150ms\n  retryOn: [gateway-error]\n'));
    const [r] = await calls(c, 1, 1);
    expect(r?.err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r?.err?.details).toContain('per-try timeout');
  }, 30_000);
});

describe('timeouts and deadlines on the gRPC path', () => {
  it('ends a call at its grpc-timeout with DEADLINE_EXCEEDED; the request timeout cuts a call without one, not a stream', async () => {
    const slow = await startSlowServer(2_000);
    servers.push(slow.server);
    const { mesh: m } = await start([slow.port], resource('TimeoutPolicy', '  request: 400ms\n'));
    const deadline = await rawCall(m.listenerPort, { 'grpc-timeout': '200m' });
    expect(deadline.head['grpc-status']).toBe('4');
    expect(deadline.ms).toBeLessThan(1_500);
    const noDeadline = await rawCall(m.listenerPort, {});
    expect(noDeadline.head['grpc-status']).toBe('14');
    expect(String(noDeadline.head['grpc-message'])).toContain('request timeout');
    expect(noDeadline.ms).toBeGreaterThanOrEqual(350);
    expect(noDeadline.ms).toBeLessThan(1_500);
  }, 30_000);

  it('gives a call without grpc-timeout no request timeout unless a TimeoutPolicy sets one (the 15 s default would cut watch-style calls)', async () => {
    const slow = await startSlowServer(15_500);
    servers.push(slow.server);
    // A RetryPolicy puts traffic management in force for the destination; its timeouts stay the defaults.
    const { mesh: m } = await start([slow.port], resource('RetryPolicy', '  attempts: 1\n'));
    const call = await rawCall(m.listenerPort, {});
    expect(call.trailers?.['grpc-status'] ?? call.head['grpc-status']).toBe('0');
    expect(call.ms).toBeGreaterThanOrEqual(15_000);
  }, 45_000);

  it('lets a server stream outlive the request timeout once it has begun', async () => {
    const { client: c } = await start([await echoServer('i0')], resource('TimeoutPolicy', '  request: 300ms\n'));
    const stream = (c.ServerStream as (m: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ text: 's', count: 20, delayMs: 50 });
    const got: number[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      stream.on('data', (msg: EchoMsg) => got.push(msg.count ?? -1));
      stream.on('error', () => undefined);
      stream.on('status', resolve);
    });
    expect(status.code).toBe(grpc.status.OK);
    expect(got.length).toBe(20);
  }, 30_000);
});

describe('idle timeouts on the gRPC path', () => {
  it('cuts a stream silent longer than the TimeoutPolicy idle, and not one that keeps talking', async () => {
    const { mesh: m, client: c } = await start([await echoServer('i0')], resource('TimeoutPolicy', '  idle: 300ms\n'));
    const run = (delayMs: number): Promise<{ got: number; status: grpc.StatusObject }> => {
      const stream = (c.ServerStream as (msg: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ text: 's', count: 4, delayMs });
      let got = 0;
      return new Promise((resolve) => {
        stream.on('data', () => (got += 1));
        stream.on('error', () => undefined);
        stream.on('status', (status: grpc.StatusObject) => resolve({ got, status }));
      });
    };
    const talking = await run(100);
    expect(talking.status.code).toBe(grpc.status.OK);
    expect(talking.got).toBe(4);
    const silent = await run(700);
    expect(silent.status.code).not.toBe(grpc.status.OK);
    expect(silent.got).toBe(1);
    expect(m.listenerPort).toBeGreaterThan(0);
  }, 30_000);
});

describe('outlier detection and circuit breaking on the gRPC path', () => {
  it('ejects an instance answering UNAVAILABLE; later calls never reach it', async () => {
    const bad = await startFailingServer(grpc.status.UNAVAILABLE);
    servers.push(bad.server);
    const { mesh: m, client: c } = await start(
      [bad.port, await echoServer('i1'), await echoServer('i2')],
      resource('OutlierDetection', '  consecutive5xx: 2\n  consecutiveGatewayErrors: 2\n  baseEjectionTime: 1m\n'),
    );
    const first = await calls(c, 60, 3);
    expect(first.filter((r) => r.err !== undefined).every((r) => r.err?.code === grpc.status.UNAVAILABLE)).toBe(true);
    expect(await metric(m, 'trellis_outlier_ejections_total', { reason: 'consecutive-gateway-errors' })).toBeGreaterThanOrEqual(1);
    const seen = bad.calls.unary;
    const later = await calls(c, 60, 3);
    expect(later.filter((r) => r.err !== undefined)).toEqual([]);
    expect(bad.calls.unary).toBe(seen);
  }, 30_000);

  it('fails fast with the breaker\'s typed reason when maxRequests are in flight', async () => {
    const slow = await startSlowServer(800);
    servers.push(slow.server);
    const { mesh: m, client: c } = await start([slow.port], resource('CircuitBreaker', '  maxRequests: 1\n'));
    const inFlight = unary(c, { text: 'a' });
    await new Promise((r) => setTimeout(r, 150));
    const started = performance.now();
    const over = await unary(c, { text: 'b' });
    expect(performance.now() - started).toBeLessThan(500);
    expect(over.err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(over.err?.details).toContain('TRELLIS_HTTP_CIRCUIT_BREAKER_OPEN');
    expect((await inFlight).reply?.text).toBe('slow');
    expect(await metric(m, 'trellis_circuit_breaker_overflows_total', { limit: 'max-requests' })).toBe(1);
  }, 30_000);
});
