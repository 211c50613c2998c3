/**
 * The mesh gateway driven by clients nobody here wrote, real processes on loopback: curl (HTTPS, SNI picking
 * the certificate, ALPN h2), h2load (many h2 streams over TLS), @grpc/grpc-js (unary and server-streaming
 * through the gateway into a grpc-js server behind a sidecar) and ws (a WebSocket echo over wss). Also
 * measured through the gateway: a canary TrafficRoute on the destination (v1 90 / v2 10 across two labelled
 * instances) and a token-bucket rate limit (20/s, burst 5) admitting what its rate allows and no more.
 * gateway.test.ts covers the same gateway with node's own clients and the edge security cases.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { WebSocket, WebSocketServer, type ClientOptions } from 'ws';
import { allow, app, cleanup, eventually, requireBuild, startMesh, tempDir, type Mesh } from './mesh-support.js';
import { selfSigned, startGateway, type CertFiles } from './gateway-support.js';

let mesh: Mesh;
let http: number;
let https: number;
let dir: string;
let shopCert: CertFiles;
let wildCert: CertFiles;
const closers: (() => void)[] = [];

/** A tool run without blocking this process: the apps behind the gateway live in it. */
function run(file: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 60_000, maxBuffer: 8 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

// A gRPC service without a .proto: raw bytes in and out, so the test owns nothing of the wire format.
const bytes = { serialize: (b: Buffer): Buffer => b, deserialize: (b: Buffer): Buffer => b };
const echoService = {
  say: { path: '/echo.v1.Echo/Say', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
  count: { path: '/echo.v1.Echo/Count', requestStream: false, responseStream: true, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
} satisfies grpc.ServiceDefinition;

async function grpcApp(): Promise<number> {
  const server = new grpc.Server();
  server.addService(echoService, {
    say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done(null, Buffer.concat([Buffer.from('echo '), call.request])),
    count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(call.request.toString());
      for (let i = 1; i <= n; i++) call.write(Buffer.from(`${i}`));
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  closers.push(() => server.forceShutdown());
  return port;
}

async function wsApp(): Promise<number> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => server.once('listening', r));
  server.on('connection', (socket) => socket.on('message', (data, binary) => socket.send(binary ? data : `echo ${String(data)}`)));
  closers.push(() => {
    for (const c of server.clients) c.terminate();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

/** `count` GETs through the gateway's HTTP listener, `concurrency` at a time on kept-alive connections. */
async function load(path: string, count: number, concurrency: number): Promise<{ status: number; body: string; retryAfter?: string }[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const out: { status: number; body: string; retryAfter?: string }[] = [];
  let next = 0;
  const one = (): Promise<{ status: number; body: string; retryAfter?: string }> => new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port: http, path, headers: { host: 'shop.example.com' }, agent }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ...(res.headers['retry-after'] === undefined ? {} : { retryAfter: res.headers['retry-after'] }) }));
    }).on('error', reject).end();
  });
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      out.push(await one());
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return out;
}

beforeAll(async () => {
  requireBuild();
  dir = tempDir('trellis-gwc-');
  const canary = `---
apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: orders-canary, namespace: default }
spec:
  destination: orders
  rules:
    - backends: [{ labels: { version: v1 }, weight: 90 }, { labels: { version: v2 }, weight: 10 }]
`;
  const from = ['trellis-gateway/gateway'];
  mesh = await startMesh({ 'orders.yaml': allow('orders', from), 'canary.yaml': canary, 'echo.yaml': allow('echo', from), 'chat.yaml': allow('chat', from) });
  const [v1, v2] = await Promise.all([app('orders-v1'), app('orders-v2')]);
  // One after another: four agents starting at once on a loaded 2-core machine can miss their ready time.
  await mesh.agent({ service: 'orders', appPort: v1.port, protocol: 'http', extra: ['--label', 'version=v1'] });
  await mesh.agent({ service: 'orders', appPort: v2.port, protocol: 'http', extra: ['--label', 'version=v2'] });
  await mesh.agent({ service: 'echo', appPort: await grpcApp(), protocol: 'grpc' });
  await mesh.agent({ service: 'chat', appPort: await wsApp(), protocol: 'http' });
  shopCert = selfSigned(dir, 'shop', 'shop.example.com');
  wildCert = selfSigned(dir, 'wild', 'wildcard.example.com', '*.example.com');
  ({ http, https } = await startGateway(dir, mesh, { shop: shopCert, wildcard: wildCert }, `routes:
  - name: metered
    hosts: [shop.example.com]
    match: { path: { prefix: /metered } }
    destination: { service: orders, namespace: default }
    rateLimit: { perSecond: 20, burst: 5 }
  - name: shop
    hosts: [shop.example.com]
    destination: { service: orders, namespace: default }
  - name: grpc
    hosts: [api.example.com]
    match: { path: { prefix: /echo.v1.Echo/ } }
    destination: { service: echo, namespace: default }
  - name: chat
    hosts: [chat.example.com]
    destination: { service: chat, namespace: default }
`));
  // Both canary instances must be known before the split is measured.
  await eventually(async () => {
    const bodies = (await load('/', 40, 4)).map((r) => r.body);
    return bodies.some((b) => b.startsWith('orders-v1')) && bodies.some((b) => b.startsWith('orders-v2'));
  }, 'the gateway reaches both orders instances', 30_000);
}, 90_000);

afterAll(async () => {
  for (const close of closers.splice(0)) close();
  await cleanup();
});

describe('the mesh gateway with real clients', { timeout: 60_000 }, () => {
  it('curl: SNI picks the certificate for the host, ALPN gives h2, the request reaches the service', async () => {
    const curl = (host: string, ca: string, path: string): Promise<{ code: number; stdout: string; stderr: string }> =>
      run('curl', ['-sS', '-v', '--http2', '--max-time', '20', '--resolve', `${host}:${https}:127.0.0.1`, '--cacert', ca, '-w', '\n%{http_code} %{http_version}', `https://${host}:${https}${path}`]);
    const shop = await curl('shop.example.com', shopCert.cert, '/from-curl');
    expect(shop.code, shop.stderr).toBe(0);
    expect(shop.stderr).toMatch(/subject: CN\s?=\s?shop\.example\.com/);
    expect(shop.stdout).toMatch(/^orders-v[12] GET \/from-curl\n\n200 2$/);
    // Another host under the wildcard gets the wildcard certificate, verified against it alone.
    const chat = await curl('chat.example.com', wildCert.cert, '/');
    expect(chat.code, chat.stderr).toBe(0);
    expect(chat.stderr).toMatch(/subject: CN\s?=\s?wildcard\.example\.com/);
    // Verified against the wrong certificate, the handshake fails: the served certificate is not the shop's.
    const wrong = await curl('chat.example.com', shopCert.cert, '/');
    expect(wrong.code).not.toBe(0);
  });

  it('h2load: many streams on a few TLS h2 connections all succeed', async () => {
    const r = await run('h2load', ['-n', '400', '-c', '4', '-m', '8', `--connect-to=127.0.0.1:${https}`, `https://shop.example.com:${https}/h2load`]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Application protocol: h2/);
    expect(r.stdout).toMatch(/requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored/);
    expect(r.stdout).toMatch(/status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx/);
  });

  it('@grpc/grpc-js: a unary and a server-streaming call through the gateway', async () => {
    const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
    const client = new Client(`127.0.0.1:${https}`, grpc.credentials.createSsl(readFileSync(wildCert.cert)), {
      'grpc.ssl_target_name_override': 'api.example.com',
      'grpc.default_authority': 'api.example.com',
    }) as unknown as {
      say(req: Buffer, cb: (e: grpc.ServiceError | null, res?: Buffer) => void): void;
      count(req: Buffer): grpc.ClientReadableStream<Buffer>;
      close(): void;
    };
    try {
      const said = await new Promise<Buffer>((resolve, reject) => client.say(Buffer.from('hello'), (e, res) => (e ? reject(e) : resolve(res as Buffer))));
      expect(said.toString()).toBe('echo hello');
      const got = await new Promise<string[]>((resolve, reject) => {
        const out: string[] = [];
        const stream = client.count(Buffer.from('25'));
        stream.on('data', (d: Buffer) => out.push(d.toString()));
        stream.on('error', reject);
        stream.on('end', () => resolve(out));
      });
      expect(got).toEqual(Array.from({ length: 25 }, (_, i) => `${i + 1}`));
      // A method the server does not have comes back as the server's own UNIMPLEMENTED, through the gateway.
      const missing = await new Promise<grpc.ServiceError | null>((resolve) => {
        const raw = new grpc.Client(`127.0.0.1:${https}`, grpc.credentials.createSsl(readFileSync(wildCert.cert)), { 'grpc.ssl_target_name_override': 'api.example.com', 'grpc.default_authority': 'api.example.com' });
        raw.makeUnaryRequest('/echo.v1.Echo/Nope', bytes.serialize, bytes.deserialize, Buffer.alloc(0), (e) => {
          raw.close();
          resolve(e);
        });
      });
      expect(missing?.code, missing?.details).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      client.close();
    }
  });

  it('ws: a WebSocket over wss through the gateway echoes text and binary', async () => {
    // ws hands TLS options through to tls.connect; its types do not list servername.
    const options: ClientOptions & { servername: string } = { servername: 'chat.example.com', headers: { host: 'chat.example.com' }, ca: readFileSync(wildCert.cert) };
    const socket = new WebSocket(`wss://127.0.0.1:${https}/chat`, options);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve());
        socket.once('error', reject);
      });
      const next = (): Promise<{ data: Buffer; binary: boolean }> => new Promise((resolve) => socket.once('message', (data, binary) => resolve({ data: data as Buffer, binary })));
      let reply = next();
      socket.send('hi');
      expect(String((await reply).data)).toBe('echo hi');
      reply = next();
      const blob = Buffer.alloc(100_000, 7);
      socket.send(blob);
      const back = await reply;
      expect(back.binary).toBe(true);
      expect(back.data.equals(blob)).toBe(true);
    } finally {
      socket.terminate();
    }
  });

  it('canary: a TrafficRoute v1 90 / v2 10 on the destination splits the gateway\'s traffic at its weights', async () => {
    const n = 1000;
    const answers = await load('/canary', n, 8);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const v2 = answers.filter((a) => a.body.startsWith('orders-v2')).length;
    const v1 = answers.filter((a) => a.body.startsWith('orders-v1')).length;
    console.log(`canary through the gateway: v1 ${v1}, v2 ${v2} of ${n}`);
    expect(v1 + v2).toBe(n);
    // 10% ± 3%: over 3 standard deviations of a random split at n = 1000, and far from 50/50 or 0.
    expect(v2 / n).toBeGreaterThanOrEqual(0.07);
    expect(v2 / n).toBeLessThanOrEqual(0.13);
  });

  it('rate limit 20/s burst 5: admits what the bucket allows over the time measured, the rest 429 with Retry-After', async () => {
    const started = performance.now();
    const answers: Awaited<ReturnType<typeof load>> = [];
    // Offered load well above the rate for ~3 s: rounds of 20 requests, 4 at a time.
    while (performance.now() - started < 3_000) answers.push(...(await load('/metered', 20, 4)));
    const seconds = (performance.now() - started) / 1000;
    const admitted = answers.filter((a) => a.status === 200).length;
    const refused = answers.filter((a) => a.status === 429);
    console.log(`rate limit 20/s burst 5: ${admitted} admitted, ${refused.length} refused of ${answers.length} in ${seconds.toFixed(2)} s`);
    expect(admitted + refused.length).toBe(answers.length);
    // Never more than the bucket can give: the burst plus the rate over the whole time.
    expect(admitted).toBeLessThanOrEqual(5 + Math.ceil(20 * seconds));
    // And not starved: with the client offering more than the rate, most of the rate is used.
    expect(answers.length).toBeGreaterThan(20 * seconds);
    expect(admitted).toBeGreaterThanOrEqual(Math.min(answers.length, Math.floor(0.7 * 20 * seconds)));
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => Number(r.retryAfter) >= 1)).toBe(true);
  });
});
