/**
 * Request mirroring, end to end over real sockets and mTLS tunnels: the share of copies follows `percent`,
 * copies carry the request (bodies included, `-shadow` authority, header edits) and their answers are
 * discarded; a mirror that hangs or fails never delays or fails a request, and copies in flight are bounded.
 * The HTTP/1.1 lanes (http-harness.ts) and the gRPC path (support/grpc-mesh.ts, a real grpc-js client).
 */
import type { IncomingMessage } from 'node:http';
import { Agent } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { send, type TestResponse } from './http-client.js';
import { startMesh, type AppHandler, type TestMesh } from './http-harness.js';
import { echoClient, loadEcho, startEchoServer, startMesh as startGrpcMesh, unary, type EchoMsg, type Mesh } from './support/grpc-mesh.js';
import { MAX_MIRRORS_IN_FLIGHT } from '../../proxy/outbound/traffic/mirror.js';
import { metricSum } from './support/traffic-resources.js';

const route = (mirror: string, set = ''): string => `apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: payments, namespace: shop }
spec:
  destination: payments
  rules:
    - backends: [{ labels: { version: v1 } }]
      mirror: ${mirror}
${set}`;

async function load(port: number, count: number, concurrency: number, request: (i: number) => { method?: string; body?: string }): Promise<TestResponse[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const out: TestResponse[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      out.push(await send({ port, path: `/r/${i}`, agent, ...request(i) }));
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return out;
}

function metric(registry: TestMesh['registry'], name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricSum(registry, name, labels);
}

interface Seen {
  method: string;
  url: string;
  host: string;
  body: string;
  cohort: string | undefined;
}

function recording(seen: Seen[], answer: (req: IncomingMessage) => number = () => 200): AppHandler {
  return (req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', body: Buffer.concat(parts).toString(), cohort: req.headers['x-cohort'] as string | undefined });
      res.statusCode = answer(req);
      res.end('v2');
    });
  };
}

const until = async (cond: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('mirroring on the HTTP/1.1 lanes', () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it('copies about `percent` of requests with their bodies and edits; answers are discarded', async () => {
    const seen: Seen[] = [];
    mesh = await startMesh({
      apps: [(_req, res) => res.end('v1'), recording(seen, () => 500)],
      labels: [{ version: 'v1' }, { version: 'v2' }],
      traffic: route('{ labels: { version: v2 }, percent: 50 }', '      requestHeaders: { set: { x-cohort: mirrored } }\n'),
    });
    const m = mesh;
    const responses = await load(m.outboundPort, 400, 8, (i) => (i % 2 === 0 ? {} : { method: 'POST', body: `body-${i}` }));
    expect(responses.map((r) => `${r.status} ${r.body}`)).toEqual(Array(400).fill('200 v1'));
    await until(async () => (await metric(m.registry, 'trellis_route_mirrors_total')) >= seen.length && seen.length > 0);
    await new Promise((r) => setTimeout(r, 200));
    // 50% of 400: 200, sd 10; ±60 is six of them.
    expect(Math.abs(seen.length - 200)).toBeLessThanOrEqual(60);
    expect(await metric(m.registry, 'trellis_route_mirrors_total', { result: 'sent' })).toBe(seen.length);
    for (const s of seen) {
      expect(s.host.endsWith('-shadow')).toBe(true);
      expect(s.cohort).toBe('mirrored');
      const i = Number(s.url.split('/')[2]);
      expect(s).toMatchObject(i % 2 === 0 ? { method: 'GET', body: '' } : { method: 'POST', body: `body-${i}` });
    }
  }, 60_000);

  it('never delays or fails a request when the mirror hangs, and bounds the copies in flight', async () => {
    let open = 0;
    let most = 0;
    const hanging: AppHandler = (req, res) => {
      open += 1;
      most = Math.max(most, open);
      req.resume();
      res.on('close', () => (open -= 1));
    };
    mesh = await startMesh({ apps: [(_req, res) => res.end('v1'), hanging], labels: [{ version: 'v1' }, { version: 'v2' }], traffic: route('{ labels: { version: v2 }, percent: 100 }') });
    const m = mesh;
    const started = performance.now();
    const responses = await load(m.outboundPort, 300, 16, () => ({}));
    expect(responses.map((r) => r.status)).toEqual(Array(300).fill(200));
    expect(performance.now() - started).toBeLessThan(10_000);
    await until(() => most >= MAX_MIRRORS_IN_FLIGHT);
    expect(most).toBe(MAX_MIRRORS_IN_FLIGHT);
    expect(await metric(m.registry, 'trellis_route_mirrors_total', { result: 'skipped-limit' })).toBe(300 - MAX_MIRRORS_IN_FLIGHT);
  }, 60_000);

  it('a mirror with no endpoint is counted, and the request goes on', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('v1')], labels: [{ version: 'v1' }], traffic: route('{ labels: { version: v9 }, percent: 100 }') });
    const responses = await load(mesh.outboundPort, 20, 2, () => ({}));
    expect(responses.map((r) => r.body)).toEqual(Array(20).fill('v1'));
    expect(await metric(mesh.registry, 'trellis_route_mirrors_total', { result: 'no-endpoint' })).toBe(20);
  }, 30_000);
});

describe('mirroring on the gRPC path', () => {
  let mesh: Mesh | undefined;
  const servers: grpc.Server[] = [];
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
    for (const s of servers.splice(0)) s.forceShutdown();
  });

  it('copies every call (message included) to v2 while v1 answers', async () => {
    const echo = loadEcho();
    const v1 = await startEchoServer('v1', echo);
    const copies: string[] = [];
    const v2 = new grpc.Server();
    v2.addService(echo.Echo.service, {
      Unary(call: grpc.ServerUnaryCall<EchoMsg, EchoMsg>, callback: grpc.sendUnaryData<EchoMsg>): void {
        copies.push(call.request.text ?? '');
        callback({ code: grpc.status.INTERNAL, details: 'the shadow fails' });
      },
    });
    const v2Port = await new Promise<number>((resolve, reject) => v2.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))));
    servers.push(v1.server, v2);
    mesh = await startGrpcMesh({
      appPorts: [v1.port, v2Port],
      protocol: 'grpc',
      labels: [{ version: 'v1' }, { version: 'v2' }],
      traffic: route('{ labels: { version: v2 }, percent: 100 }').replaceAll('payments', 'echo'),
    });
    const client = echoClient(echo, mesh.listenerPort);
    try {
      const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => unary(client, { text: `m${i}` })));
      expect(replies.map((r) => r.reply?.instance)).toEqual(Array(40).fill('v1'));
      await until(() => copies.length === 40);
      expect(copies.sort()).toEqual(Array.from({ length: 40 }, (_, i) => `m${i}`).sort());
    } finally {
      client.close();
    }
  }, 30_000);
});
