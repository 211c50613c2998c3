/**
 * gRPC policy and failures with real `@grpc/grpc-js` peers: one method allowed and another denied (a gRPC
 * PERMISSION_DENIED naming the deciding rule, not an HTTP 403), a streaming call cut when the policy
 * changes, and an instance killed mid-stream (UNAVAILABLE for that stream, new calls elsewhere).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import type { Server } from '@grpc/grpc-js';
import { ALLOW_WEB, echoClient, loadEcho, startEchoServer, startMesh, unary, type EchoMsg, type EchoPackage, type Mesh } from './support/grpc-mesh.js';

const ONE_METHOD = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: echo-methods, namespace: shop }
spec:
  destination: echo
  rules:
    - action: deny
      from: [web]
      grpc: { methods: [trellis.test.Echo/ServerStream] }
    - action: allow
      from: [web]
      grpc: { methods: [trellis.test.Echo/Unary, trellis.test.Echo/ServerStream] }
`;

function streamStatus(call: grpc.ClientReadableStream<EchoMsg>): Promise<{ count: number; status: grpc.StatusObject; instances: Set<string> }> {
  return new Promise((resolve) => {
    let count = 0;
    const instances = new Set<string>();
    call.on('data', (m: EchoMsg) => {
      count += 1;
      instances.add(m.instance ?? '?');
    });
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => resolve({ count, status, instances }));
  });
}

describe('gRPC policy and failures', () => {
  let echo: EchoPackage;
  let servers: Server[];
  let mesh: Mesh;
  let client: ReturnType<typeof echoClient>;

  beforeAll(async () => {
    echo = loadEcho();
    const started = await Promise.all(['i0', 'i1', 'i2'].map((name) => startEchoServer(name, echo)));
    servers = started.map((s) => s.server);
    mesh = await startMesh({ appPorts: started.map((s) => s.port), protocol: 'grpc', policy: ONE_METHOD });
    client = echoClient(echo, mesh.listenerPort);
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await mesh?.close();
    for (const s of servers ?? []) s.forceShutdown();
  });

  it('allows one method and denies others with PERMISSION_DENIED naming the deciding rule', async () => {
    const allowed = await unary(client, { text: 'ok' });
    expect(allowed.err).toBeUndefined();
    const denied = streamStatus((client.ServerStream as (m: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ count: 3 }));
    const { status, count } = await denied;
    expect(count).toBe(0);
    expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status.details).toContain('rule 0 of policy shop/echo-methods');
    expect(status.details).toContain('TRELLIS_HTTP_DENIED');
    expect(status.metadata.get('trellis-denied-by')[0]).toBe('shop/echo-methods#0');
    // Not listed at all: default deny, also a gRPC status.
    const other = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = (client.ClientStream as (cb: (err: grpc.ServiceError | null) => void) => grpc.ClientWritableStream<EchoMsg>)((err) => resolve(err));
      call.write({ text: 'x' });
      call.end();
    });
    expect(other?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(other?.metadata.get('trellis-denied-by')[0]).toBe('default-deny');
  });

  it('cuts a streaming call with PERMISSION_DENIED when the policy changes', async () => {
    await mesh.setPolicy(ALLOW_WEB);
    const call = (client.ServerStream as (m: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ text: 'long', count: 100_000, delayMs: 10 });
    const result = streamStatus(call);
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    await mesh.setPolicy(ONE_METHOD);
    const { status, count } = await result;
    expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status.details).toContain('permission revoked');
    expect(count).toBeGreaterThan(0);
    expect(count).toBeLessThan(100_000);
  });

  it('ends a stream with UNAVAILABLE when its instance is killed, and sends new calls elsewhere', async () => {
    await mesh.setPolicy(ALLOW_WEB);
    const call = (client.ServerStream as (m: EchoMsg) => grpc.ClientReadableStream<EchoMsg>)({ text: 'k', count: 100_000, delayMs: 10 });
    const result = streamStatus(call);
    const first = await new Promise<EchoMsg>((resolve) => call.once('data', resolve));
    const victim = mesh.instances.find((i) => i.name === first.instance);
    expect(victim).toBeDefined();
    const index = mesh.instances.indexOf(victim as (typeof mesh.instances)[number]);
    // The whole instance goes: its app and its sidecar.
    servers[index]?.forceShutdown();
    await victim?.sidecar.stop(0);
    const { status } = await result;
    expect(status.code).toBe(grpc.status.UNAVAILABLE);
    const after = await Promise.all(Array.from({ length: 30 }, () => unary(client, { text: 'after' })));
    for (const r of after) {
      expect(r.err).toBeUndefined();
      expect(r.reply?.instance).not.toBe(first.instance);
    }
  });
});
