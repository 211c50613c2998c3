/**
 * The HTTP path inside two whole sidecars (`createSidecar`), as `trellis proxy run` and the agent use it:
 * an `http` service port on the caller side, an `http` app port on the destination side, the tunnel
 * server and session pool of proxy/core in between. Also: a policy change cuts an upgraded stream that
 * the new policy denies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, request, Agent, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Registry } from 'prom-client';
import { silentLogger } from '../../common/log.js';
import { compilePolicy } from '../../policy/compiled-policy.js';
import { parsePolicyFiles } from '../../policy/validator.js';
import { createSidecar, type Sidecar, type SidecarConfig } from '../../proxy/sidecar.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { send } from './http-client.js';
import { POLICY_YAML } from './http-harness.js';

const DENY_WS = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: no-websockets, namespace: shop }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: deny
      from: [orders]
      http: { paths: ["/ws/*"] }
    - action: allow
      from: [orders]
`;

describe('HTTP path in a sidecar pair', () => {
  let pki: TestPki;
  let app: Server;
  let appPort: number;
  const appSockets = new Set<Socket>();
  let server: Sidecar;
  let client: Sidecar;
  let listener: number;

  const policy = (yaml: string): SidecarConfig['policy'] =>
    compilePolicy(parsePolicyFiles([{ path: 'policy.yaml', text: yaml }]), { trustDomain: pki.trustDomain, rootNamespace: 'trellis-system' });

  beforeAll(async () => {
    pki = await createTestPki();
    app = createServer((req: IncomingMessage, res) => res.end(`app saw ${req.method} ${req.url} from ${String(req.headers['x-forwarded-client-cert'])}`));
    app.on('connection', (s: Socket) => {
      appSockets.add(s);
      s.once('close', () => appSockets.delete(s));
    });
    app.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.pipe(socket);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    appPort = (app.address() as AddressInfo).port;
    server = createSidecar({
      service: 'payments',
      namespace: 'shop',
      trustDomain: pki.trustDomain,
      zone: 'zone-a',
      identity: await pki.issue('payments', 'shop'),
      appPorts: [{ port: appPort, protocol: 'http', host: '127.0.0.1' }],
      tunnel: { address: '127.0.0.1', port: 0 },
      admin: null,
      logger: silentLogger(),
      registry: new Registry(),
      config: { upstreams: [], listeners: [], policy: policy(POLICY_YAML) },
    });
    await server.start();
    const tunnelPort = server.addresses().tunnel?.port ?? 0;
    client = createSidecar({
      service: 'orders',
      namespace: 'shop',
      trustDomain: pki.trustDomain,
      zone: 'zone-a',
      identity: await pki.issue('orders', 'shop'),
      appPorts: [],
      tunnel: { address: '127.0.0.1', port: 0 },
      admin: null,
      logger: silentLogger(),
      registry: new Registry(),
      config: {
        upstreams: [
          {
            name: 'payments',
            namespace: 'shop',
            ports: [{ port: 80, targetPort: appPort, protocol: 'http' }],
            endpoints: [{ address: '127.0.0.1', tunnelPort, zone: 'zone-a', healthy: true }],
          },
        ],
        listeners: [{ bindAddress: '127.0.0.1', localPort: 0, service: 'payments', namespace: 'shop', port: 80 }],
        policy: policy(''),
      },
    });
    await client.start();
    listener = client.addresses().listeners[0]?.address?.port ?? 0;
  });

  afterAll(async () => {
    await client?.stop(0);
    await server?.stop(0);
    for (const s of appSockets) s.destroy();
    await new Promise<void>((r) => app?.close(() => r()));
  });

  it('carries allowed requests on one kept-alive connection and refuses denied ones', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const ok = await send({ port: listener, path: '/orders/1', agent });
      expect(ok.status).toBe(200);
      expect(ok.body).toBe(`app saw GET /orders/1 from URI=spiffe://${pki.trustDomain}/ns/shop/sa/orders`);
      const denied = await send({ port: listener, path: '/admin/x', agent });
      expect(denied.status).toBe(403);
      expect(denied.headers['trellis-denied-by']).toBe('shop/payments-callers#0');
      const again = await send({ port: listener, method: 'POST', path: '/orders', body: 'x', agent });
      expect(again.status).toBe(200);
      expect(new Set([ok.localPort, denied.localPort, again.localPort]).size).toBe(1);
      // One lane carried all three, one each way, counted at scrape time.
      const lanes = async (sidecar: Sidecar): Promise<Record<string, number>> => {
        const metric = await sidecar.registry.getSingleMetric('trellis_http_lanes')?.get();
        return Object.fromEntries((metric?.values ?? []).map((v) => [`${String(v.labels.direction)}/${String(v.labels.state)}`, v.value]));
      };
      expect(await lanes(client)).toMatchObject({ 'outbound/open': 1, 'outbound/idle': 1 });
      expect(await lanes(server)).toMatchObject({ 'inbound/open': 1 });
    } finally {
      agent.destroy();
    }
  });

  it('judges each request on a kept-alive lane by the policy in force when it arrives', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = await send({ port: listener, path: '/ws/history', agent });
      expect(before.status).toBe(200);
      await server.applyConfig({ upstreams: [], listeners: [], policy: policy(DENY_WS) });
      const after = await send({ port: listener, path: '/ws/history', agent });
      expect(after.status).toBe(403);
      expect(after.headers['trellis-denied-by']).toBe('shop/no-websockets#0');
      expect(after.localPort).toBe(before.localPort);
    } finally {
      agent.destroy();
      await server.applyConfig({ upstreams: [], listeners: [], policy: policy(POLICY_YAML) });
    }
  });

  it('closes an upgraded stream when a new policy denies it', async () => {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: listener, path: '/ws/feed', headers: { connection: 'Upgrade', upgrade: 'websocket' }, agent: false });
      req.on('error', reject);
      req.on('response', (r) => reject(new Error(`no upgrade: ${r.statusCode}`)));
      req.on('upgrade', (_res: IncomingMessage, s: Socket) => resolve(s));
      req.end();
    });
    const echoed = await new Promise<string>((resolve) => {
      socket.once('data', (c: Buffer) => resolve(c.toString()));
      socket.write('ping');
    });
    expect(echoed).toBe('ping');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    await server.applyConfig({ upstreams: [], listeners: [], policy: policy(DENY_WS) });
    await closed;
    expect(socket.destroyed).toBe(true);
  });
});
