/**
 * An injected pod's agent, end to end on loopback: it bootstraps with a projected service-account token
 * (checked by the control plane's real TokenReview authenticator against a fake Kubernetes API), learns
 * the trust domain from the mesh roots it was given, re-reads the token file at each attempt (the kubelet
 * rotates it), registers several app ports (or none, for a Job), answers the kubelet on its status port,
 * and drains and exits 0 on a loopback `POST /quitquitquit`.
 */
import { createServer as createHttpServer, request, type Server } from 'node:http';
import { createServer as createTcpServer, connect, type AddressInfo, type Server as TcpServer } from 'node:net';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentArgs, runSubcommand } from '../../cli/agent-run.js';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import { silentLogger } from '../../common/log.js';
import { fixture } from '../control/fixtures/k8s-fake-api.js';
import { startKubernetesControlPlane, type KubernetesControlPlane } from './k8s-control-plane.js';

const TRUST_DOMAIN = 'mesh.example';
let cp: KubernetesControlPlane;
let dir: string;
let httpApp: Server;
let tcpApp: TcpServer;
const cleanups: (() => Promise<void> | void)[] = [];

/** A JWT-shaped token, as the kubelet projects it (only the API server judges its signature). */
function projectedToken(id: string, sa = 'payments'): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', kid: 'k1' })}.${part({ aud: ['trellis'], exp: Math.floor(Date.now() / 1000) + 3600, sub: `system:serviceaccount:shop:${sa}`, jti: id })}.c2lnbmF0dXJl`;
}

function reviewFor(serviceAccount: string): Record<string, unknown> {
  const status = fixture<{ status: { user: { username: string } } }>('k8s-tokenreview-authenticated.json').status;
  return { ...status, user: { ...status.user, username: `system:serviceaccount:shop:${serviceAccount}` } };
}

const reviewedTokens = (): string[] => cp.kubeApi.requests.filter((r) => r.path.endsWith('/tokenreviews')).map((r) => (JSON.parse(r.body) as { spec: { token: string } }).spec.token);

beforeAll(async () => {
  cp = await startKubernetesControlPlane(TRUST_DOMAIN);
  dir = mkdtempSync(join(tmpdir(), 'trellis-k8s-agent-'));
  writeFileSync(join(dir, 'ca.pem'), cp.pki.bundlePem);
  httpApp = createHttpServer((req, res) => res.writeHead(req.url === '/ready' ? 200 : 404).end());
  httpApp.listen(0, '127.0.0.1');
  await once(httpApp, 'listening');
  tcpApp = createTcpServer((s) => s.end());
  tcpApp.listen(0, '127.0.0.1');
  await once(tcpApp, 'listening');
});

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

afterAll(async () => {
  httpApp.closeAllConnections();
  await Promise.all([new Promise((r) => httpApp.close(r)), new Promise((r) => tcpApp.close(r))]);
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
});

function baseArgs(tokenFile: string): string[] {
  // No --trust-domain: as the injector runs it, the agent learns it from the roots in --ca-file.
  return ['--control', cp.url, '--ca-file', join(dir, 'ca.pem'), '--token-file', tokenFile, '--service', 'payments', '--namespace', 'shop', '--zone', 'east', '--address', '127.0.0.1', '--tunnel', '127.0.0.1:0', '--admin', 'off', '--status', '127.0.0.1:0', '--no-access-log', '--log-level', 'silent', '--drain-grace', '1s'];
}

function call(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('an injected pod\'s agent', () => {
  it('bootstraps with its projected token, serves several ports and the kubelet, and exits 0 on /quitquitquit', async () => {
    const tokenFile = join(dir, 'token-a');
    const token = projectedToken('a');
    writeFileSync(tokenFile, `${token}\n`);
    cp.kubeApi.tokenReview = () => reviewFor('payments');
    const httpPort = (httpApp.address() as AddressInfo).port;
    const tcpPort = (tcpApp.address() as AddressInfo).port;
    const probes = join(dir, 'probes-a.json');
    writeFileSync(probes, JSON.stringify({ '/app-health/payments/readyz': { kind: 'http', port: httpPort, path: '/ready', timeoutSeconds: 1 }, '/app-health/payments/livez': { kind: 'tcp', port: tcpPort, timeoutSeconds: 1 } }));
    const argv = [...baseArgs(tokenFile), '--app-port', String(httpPort), '--protocol', 'http', '--app-port', String(tcpPort), '--protocol', 'tcp', '--app-probes', probes];

    // The command as `trellis agent run` runs it, in this process (its signal handlers removed after).
    const sigterm = process.listeners('SIGTERM');
    const sigint = process.listeners('SIGINT');
    cleanups.push(() => {
      for (const l of process.listeners('SIGTERM')) if (!sigterm.includes(l)) process.off('SIGTERM', l);
      for (const l of process.listeners('SIGINT')) if (!sigint.includes(l)) process.off('SIGINT', l);
    });
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const exit = runSubcommand.run(argv, { stdout, stderr: new PassThrough(), env: {} });
    await expect.poll(() => out.includes('"event":"ready"'), { timeout: 10_000 }).toBe(true);
    const ready = JSON.parse(out.trim().split('\n')[0] as string) as { spiffeId: string; status: number };
    expect(ready.spiffeId).toBe(`spiffe://${TRUST_DOMAIN}/ns/shop/sa/payments`);
    expect(reviewedTokens()).toContain(token);

    await expect.poll(() => cp.registry.entries().find((e) => e.service === 'payments')?.ports, { timeout: 10_000 }).toEqual([
      { port: httpPort, protocol: 'http' },
      { port: tcpPort, protocol: 'tcp' },
    ]);
    await expect.poll(async () => (await call(ready.status, '/ready')).status, { timeout: 10_000 }).toBe(200);
    expect((await call(ready.status, '/app-health/payments/readyz')).status).toBe(200);
    expect((await call(ready.status, '/app-health/payments/livez')).status).toBe(200);

    expect(await call(ready.status, '/quitquitquit', 'POST')).toEqual({ status: 200, body: 'draining and exiting\n' });
    expect(await exit).toBe(0);
    // Deregistered before draining, and the status port closed last.
    expect(cp.registry.entries().find((e) => e.service === 'payments')).toBeUndefined();
    expect(await refusesConnections(ready.status)).toBe(true);
  });

  it('re-reads the token file at each attempt, so a token the kubelet rotated is used; a Job registers no port', async () => {
    const tokenFile = join(dir, 'token-b');
    const stale = projectedToken('stale');
    const fresh = projectedToken('fresh');
    writeFileSync(tokenFile, stale);
    // The API server fails on the first token (the agent must retry, not give up), and the kubelet
    // rotates the file meanwhile.
    cp.kubeApi.tokenReview = (token) => {
      if (token === stale) {
        writeFileSync(tokenFile, fresh);
        return { httpStatus: 500, body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'etcdserver: request timed out', code: 500 } };
      }
      return reviewFor('payments');
    };
    const { config } = parseAgentArgs(baseArgs(tokenFile));
    expect(config.appPorts).toEqual([]);
    let quits = 0;
    const agent: RunningAgent = await startAgent(config, silentLogger(), { onQuitRequested: () => quits++ });
    cleanups.push(() => agent.stop(0));
    expect(reviewedTokens().slice(-2)).toEqual([stale, fresh]);
    expect(agent.status().spiffeId).toBe(`spiffe://${TRUST_DOMAIN}/ns/shop/sa/payments`);
    await expect.poll(() => cp.registry.entries().find((e) => e.service === 'payments')?.ports, { timeout: 10_000 }).toEqual([]);
    expect(agent.status().app).toEqual({ healthy: true, detail: 'no app port to check' });
    const status = agent.addresses().status?.port as number;
    expect((await call(status, '/quitquitquit', 'POST')).status).toBe(200);
    await expect.poll(() => quits).toBe(1);
  });

  it('is refused when its token belongs to another service account, and closes its status port', async () => {
    const tokenFile = join(dir, 'token-c');
    writeFileSync(tokenFile, projectedToken('c', 'billing'));
    cp.kubeApi.tokenReview = () => reviewFor('billing');
    // A free port, so the test knows where the status port was.
    const probe = createTcpServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const statusPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const { config } = parseAgentArgs([...baseArgs(tokenFile), '--status', `127.0.0.1:${statusPort}`]);
    const err = await startAgent(config, silentLogger()).then(
      (agent) => {
        cleanups.push(() => agent.stop(0));
        return undefined;
      },
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err?.code).toBe('TRELLIS_AGENT_BOOTSTRAP_REFUSED');
    // The CSR asked for payments; the token is billing's: the control plane signs nothing.
    expect(err?.message).toMatch(/the credential is for shop\/billing.*asks for names other than spiffe:\/\/mesh\.example\/ns\/shop\/sa\/billing/);
    expect(await refusesConnections(statusPort)).toBe(true);
  });
});
