/**
 * gRPC through the mesh with real, unmodified `@grpc/grpc-js` clients and servers: unary, server, client and
 * bidirectional streaming, deadlines, cancellation, large messages, metadata and trailers; per-call
 * balancing over three instances behind one client connection; gRPC status and method in the metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import type { Server } from '@grpc/grpc-js';
import { echoClient, loadEcho, startEchoServer, startMesh, unary, type EchoMsg, type EchoPackage, type Mesh } from './support/grpc-mesh.js';

type Client = ReturnType<typeof echoClient>;

function collect(stream: grpc.ClientReadableStream<EchoMsg> | grpc.ClientDuplexStream<EchoMsg, EchoMsg>): Promise<{ messages: EchoMsg[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const messages: EchoMsg[] = [];
    stream.on('data', (m: EchoMsg) => messages.push(m));
    stream.on('error', () => undefined);
    stream.on('status', (status: grpc.StatusObject) => resolve({ messages, status }));
  });
}

describe('gRPC calls through sidecars (grpc port, three instances)', () => {
  let echo: EchoPackage;
  let servers: Server[];
  let mesh: Mesh;
  let client: Client;

  beforeAll(async () => {
    echo = loadEcho();
    const started = await Promise.all(['i0', 'i1', 'i2'].map((name) => startEchoServer(name, echo)));
    servers = started.map((s) => s.server);
    mesh = await startMesh({ appPorts: started.map((s) => s.port), protocol: 'grpc' });
    client = echoClient(echo, mesh.listenerPort);
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await mesh?.close();
    for (const s of servers ?? []) s.forceShutdown();
  });

  it('carries unary calls with metadata both ways and trailers, balanced per call within 10% of even', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-caller', 'tester');
    const first = await unary(client, { text: 'hi' }, { metadata });
    expect(first.err).toBeUndefined();
    expect(first.reply?.text).toBe('hi caller=tester');
    expect(first.metadata?.get('x-instance')[0]).toBe(first.reply?.instance);
    expect(first.trailers?.get('x-trailer')[0]).toBe(`from-${String(first.reply?.instance)}`);
    const counts = new Map<string, number>();
    const calls = 300;
    for (let batch = 0; batch < calls / 30; batch++) {
      const replies = await Promise.all(Array.from({ length: 30 }, () => unary(client, { text: 'x' })));
      for (const r of replies) {
        expect(r.err).toBeUndefined();
        counts.set(r.reply?.instance ?? '?', (counts.get(r.reply?.instance ?? '?') ?? 0) + 1);
      }
    }
    expect([...counts.keys()].sort()).toEqual(['i0', 'i1', 'i2']);
    for (const n of counts.values()) expect(Math.abs(n - calls / 3)).toBeLessThanOrEqual(calls / 3 / 10);
  });

  it('carries server streaming, client streaming and bidirectional streaming', async () => {
    const server = collect((client.ServerStream as (m: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ text: 's', count: 200 }));
    const { messages, status } = await server;
    expect(status.code).toBe(grpc.status.OK);
    expect(messages.map((m) => m.count)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(new Set(messages.map((m) => m.instance)).size).toBe(1);

    const upload = await new Promise<{ err: grpc.ServiceError | null; reply?: EchoMsg }>((resolve) => {
      const call = (client.ClientStream as (cb: (err: grpc.ServiceError | null, r?: EchoMsg) => void) => grpc.ClientWritableStream<EchoMsg>)((err, reply) => resolve({ err, reply }));
      for (let i = 0; i < 100; i++) call.write({ data: Buffer.alloc(1000, i) });
      call.end();
    });
    expect(upload.err).toBeNull();
    expect(upload.reply?.text).toBe('got 100 messages, 100000 bytes');

    const bidi = (client.Bidi as () => grpc.ClientDuplexStream<EchoMsg, EchoMsg>)();
    const done = collect(bidi);
    // Ping-pong: each message is written only after the previous answer, so both directions are live at once.
    let n = 0;
    bidi.on('data', () => {
      n += 1;
      if (n < 50) bidi.write({ text: `m${n}`, count: n });
      else bidi.end();
    });
    bidi.write({ text: 'm0', count: 0 });
    const result = await done;
    expect(result.status.code).toBe(grpc.status.OK);
    expect(result.messages.map((m) => m.text)).toEqual(Array.from({ length: 50 }, (_, i) => `echo m${i}`));
  });

  it('carries large messages both ways (16 MiB) with flow control', async () => {
    const data = Buffer.alloc(16 * 1024 * 1024, 7);
    const r = await unary(client, { text: 'big', data });
    expect(r.err).toBeUndefined();
    expect(r.reply?.count).toBe(data.length);
    expect(r.reply?.data?.equals(data)).toBe(true);
  });

  it('ends a call past its grpc-timeout with DEADLINE_EXCEEDED, and the next call goes on', async () => {
    const slow = await unary(client, { text: 'slow', delayMs: 2000 }, { deadlineMs: 300 });
    expect(slow.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    const fine = await unary(client, { text: 'quick' }, { deadlineMs: 5000 });
    expect(fine.err).toBeUndefined();
  });

  it('the mesh answers DEADLINE_EXCEEDED itself, as a gRPC status, for a raw HTTP/2 caller', async () => {
    const { connect } = await import('node:http2');
    const session = connect(`http://127.0.0.1:${mesh.listenerPort}`);
    try {
      const req = session.request({ ':method': 'POST', ':path': '/trellis.test.Echo/Unary', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '200m' });
      // One gRPC message (5-byte prefix) holding field 5 (delayMs) = 2000: the app answers after the deadline.
      req.end(Buffer.from([0, 0, 0, 0, 3, 0x28, 0xd0, 0x0f]));
      const got = await new Promise<{ headers: Record<string, unknown>; trailers?: Record<string, unknown> }>((resolve) => {
        let headers: Record<string, unknown> = {};
        req.on('response', (h) => (headers = h));
        req.on('trailers', (t) => resolve({ headers, trailers: t }));
        // A Trailers-Only response ends with its one HEADERS frame.
        req.on('close', () => resolve({ headers }));
        req.resume();
      });
      const status = got.trailers?.['grpc-status'] ?? got.headers['grpc-status'];
      expect(status).toBe('4');
      expect(String(got.trailers?.['grpc-message'] ?? got.headers['grpc-message'])).toContain('TRELLIS_HTTP_DEADLINE_EXCEEDED');
    } finally {
      session.close();
    }
  });

  it('cancels a call end to end: the server sees it cancelled and the client gets CANCELLED', async () => {
    const call = (client.ServerStream as (m: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ text: 'c', count: 100_000, delayMs: 5 });
    const result = collect(call);
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    call.cancel();
    expect((await result).status.code).toBe(grpc.status.CANCELLED);
    // The tunnel and app streams were cancelled too: every instance still serves new calls at once.
    const after = await Promise.all(Array.from({ length: 6 }, () => unary(client, { text: 'after' })));
    for (const r of after) expect(r.err).toBeUndefined();
  });

  it('counts calls by gRPC status and method on both sides', async () => {
    const text = await mesh.client.registry.metrics();
    expect(text).toMatch(/trellis_grpc_requests_total\{direction="outbound",source="shop\/web",destination="shop\/echo",method="trellis.test.Echo\/Unary",grpc_status="0"\} \d+/);
    expect(text).toMatch(/trellis_grpc_requests_total\{[^}]*method="trellis.test.Echo\/Unary",grpc_status="4"\} \d+/);
    expect(text).toMatch(/trellis_grpc_request_duration_seconds_bucket\{[^}]*method="trellis.test.Echo\/ServerStream"/);
    const inbound = (await Promise.all(mesh.instances.map((i) => i.sidecar.registry.metrics()))).join('\n');
    expect(inbound).toMatch(/trellis_grpc_requests_total\{direction="inbound",source="shop\/web",destination="shop\/echo",method="trellis.test.Echo\/Bidi",grpc_status="0"\} 1/);
  });
});
