/**
 * gRPC through the mesh with real, unmodified `@grpc/grpc-js` clients and servers: unary, server, client and
 * bidirectional streaming, deadlines, cancellation, large messages, metadata and trailers; per-call
 * balancing over three instances behind one client connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import type { Server } from '@grpc/grpc-js';
import { echoClient, loadEcho, startEchoServer, startMesh, unary, type EchoPackage, type Mesh } from './support/grpc-mesh.js';

describe('gRPC calls through a sidecar pair (grpc port, three instances)', () => {
  let echo: EchoPackage;
  let servers: Server[];
  let mesh: Mesh;
  let client: ReturnType<typeof echoClient>;

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
});
