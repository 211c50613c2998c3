/**
 * Hardening item 13: two instances of one service whose apps listen on different ports behind one service
 * port. Real agents and sidecars against the real control plane over HTTPS on loopback (port 0): the
 * caller's explicit listeners (one TCP, one HTTP service port) must reach BOTH instances, each at its own
 * app port, with every connection and request answered the first time.
 *
 * Before endpoints carried their own target ports, the second instance registered its app ports as new
 * service ports and every endpoint was dialled at the first instance's port: a TCP connection picked onto
 * the second instance got 404 (unknown app port) and was closed; an HTTP request's lane was refused and
 * retried on the first instance, so the second never answered.
 *
 * Beside it, on the same control plane: an agent whose listener cannot bind says its config was applied
 * with listeners failing (metric, /ready), not plainly "applied".
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import type { UpstreamSpec } from '../../agent/config.js';
import { parseAgentArgs } from '../../cli/agent-run.js';
import { silentLogger } from '../../common/log.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { send } from '../proxy/http-client.js';
import { roundTrip } from '../proxy/support/mesh.js';
import { allowAllPolicyDir, removeDir, startTestControlPlane, type TestControlPlane } from '../control/support.js';

let t: TestControlPlane;
let tokens: TokenService;
const agents: RunningAgent[] = [];
const servers: (Server | HttpServer)[] = [];

beforeAll(async () => {
  const dir = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'trellis-cp-'));
  t = await startTestControlPlane({ policyDir: allowAllPolicyDir(dir) }, dir);
  tokens = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local');
});

afterAll(async () => {
  for (const a of agents.reverse()) await a.stop(0);
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  await t.close();
  removeDir(t.dir);
});

async function listen<S extends Server | HttpServer>(server: S): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** One instance's apps: HTTP answers its name; TCP writes its name and closes when the caller does. */
async function apps(name: string): Promise<{ http: number; tcp: number }> {
  const http = await listen(createHttpServer((_req, res) => res.end(name)));
  const tcp = await listen(
    createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.resume();
      s.on('end', () => s.end(name));
    }),
  );
  return { http, tcp };
}

async function agent(service: string, args: string[], upstreams: UpstreamSpec[] = []): Promise<RunningAgent> {
  const dir = mkdtempSync(join(t.dir, `${service}-`));
  writeFileSync(join(dir, 'ca.pem'), t.cp.trustBundlePem);
  writeFileSync(join(dir, 'token'), (await tokens.create(service, 'shop', 3_600_000)).token);
  const parsed = parseAgentArgs(['--control', t.endpoint.url.toString(), '--ca-file', join(dir, 'ca.pem'), '--token-file', join(dir, 'token'), '--service', service, '--namespace', 'shop',
    '--address', '127.0.0.1', '--tunnel', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--no-access-log', '--log-level', 'silent', ...args]).config;
  const running = await startAgent({ ...parsed, upstreams }, silentLogger());
  agents.push(running);
  return running;
}

async function until(check: () => Promise<boolean>, what: string, debug: () => Promise<unknown>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}; ${JSON.stringify(await debug())}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function getJson<T>(port: number, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(JSON.parse(body) as T));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A port free on loopback now (explicit listeners are keyed by local port, so two cannot both ask for 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('instances of one service on different app ports behind one service port', () => {
  it('a caller reaches both through its explicit listeners, over TCP and HTTP, each answered the first time', async () => {
    const a = await apps('A');
    const b = await apps('B');
    const payments = t.cp.registry;
    await agent('payments', ['--app-port', String(a.http), '--protocol', 'http', '--app-port', String(a.tcp), '--protocol', 'tcp']);
    await until(async () => payments.upstream('shop', 'payments').endpoints.length === 1, 'instance A registered', async () => payments.upstream('shop', 'payments'));
    // B registers after A: the service ports keep A's numbers, and B serves them on its own app ports.
    await agent('payments', ['--app-port', String(b.http), '--protocol', 'http', '--app-port', String(b.tcp), '--protocol', 'tcp']);

    const caller = await agent('frontend', [], [
      { service: 'payments', namespace: 'shop', port: a.http, bindAddress: '127.0.0.1', localPort: await freePort() },
      { service: 'payments', namespace: 'shop', port: a.tcp, bindAddress: '127.0.0.1', localPort: await freePort() },
    ]);
    const listener = (servicePort: number): number | undefined => caller.addresses().listeners.find((l) => l.port === servicePort)?.address?.port;
    type Upstream = { name: string; ports: { port: number }[]; endpoints: { healthy: boolean }[] };
    const admin = caller.addresses().agentAdmin?.port as number;
    const upstream = async (): Promise<Upstream | undefined> => (await getJson<{ snapshot?: { upstreams: Upstream[] } }>(admin, '/config')).snapshot?.upstreams.find((u) => u.name === 'payments');
    await until(
      async () => listener(a.http) !== undefined && listener(a.tcp) !== undefined && (await upstream())?.endpoints.filter((e) => e.healthy).length === 2,
      'the caller holds both endpoints and both listeners',
      async () => ({ listeners: caller.addresses().listeners, upstream: await upstream() }),
    );

    const tcpAnswers = new Map<string, number>();
    for (let i = 0; i < 24; i += 1) {
      const { data, error } = await roundTrip(listener(a.tcp) as number, `hello ${i}`);
      expect(error).toBeUndefined();
      tcpAnswers.set(data.toString(), (tcpAnswers.get(data.toString()) ?? 0) + 1);
    }
    expect([...tcpAnswers.keys()].sort()).toEqual(['A', 'B']);

    const httpAnswers = new Map<string, number>();
    for (let i = 0; i < 24; i += 1) {
      const res = await send({ port: listener(a.http) as number, path: `/r${i}` });
      expect(res.status).toBe(200);
      httpAnswers.set(res.body, (httpAnswers.get(res.body) ?? 0) + 1);
    }
    expect([...httpAnswers.keys()].sort()).toEqual(['A', 'B']);

    // Every connection and request ended well at the caller.
    const metrics = await caller.registry.metrics();
    expect(metrics).not.toMatch(/trellis_tcp_connections_total\{[^}]*direction="outbound"[^}]*result="(?!ok)[^"]*"/);
    // One service port per protocol: the second instance added none.
    expect((await upstream())?.ports.map((p) => p.port).sort()).toEqual([a.http, a.tcp].sort());
    expect(metrics).not.toMatch(/trellis_http_requests_total\{[^}]*direction="outbound"[^}]*status_class="(?!2xx)/);
  });
});

describe('a config whose listener cannot bind', () => {
  it('is counted and logged as applied with listeners failing, not plainly applied', async () => {
    const app = await apps('O');
    await agent('orders', ['--app-port', String(app.http), '--protocol', 'http']);
    // Known before the caller starts, so its every config has the listener (none is applied without it).
    await until(async () => t.cp.registry.upstream('shop', 'orders').endpoints.length === 1, 'orders registered', async () => t.cp.registry.upstream('shop', 'orders'));
    // Another process holds the caller's local port.
    const squatter = createServer();
    const taken = await listen(squatter);
    const caller = await agent('checkout', [], [{ service: 'orders', namespace: 'shop', port: app.http, bindAddress: '127.0.0.1', localPort: taken }]);
    const updates = async (result: string): Promise<number> => {
      const metric = await caller.registry.getSingleMetric('trellis_agent_config_updates_total')?.get();
      return metric?.values.find((v) => v.labels.result === result)?.value ?? 0;
    };
    await until(async () => (await updates('applied-degraded')) > 0, 'a degraded apply counted', async () => caller.status());
    expect(await updates('applied')).toBe(0);
    const status = caller.status() as { ready: boolean; reasons: string[]; config: { listenersFailing: number } };
    expect(status.config.listenersFailing).toBe(1);
    expect(status.ready).toBe(false);
    expect(status.reasons.join('\n')).toMatch(new RegExp(`outbound listener shop/orders:${app.http} not bound`));
  });
});
