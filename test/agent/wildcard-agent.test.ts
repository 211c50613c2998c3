/**
 * A mesh-wide agent (`--upstream '*'`, the default under transparent capture) against the real control
 * plane over HTTPS on loopback: a service that joins the mesh reaches the agent's sidecar config as a
 * whole upstream with its endpoint, and one that leaves (its last instance deregisters) is dropped from it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_UPSTREAMS, CONTROL_PATHS, type AgentSnapshot } from '../../api/control-protocol.js';
import { controlRequest } from '../../api/control-client.js';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import { parseAgentArgs } from '../../cli/agent-run.js';
import { silentLogger } from '../../common/log.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { allowAllPolicyDir, issueWithToken, registration, removeDir, startTestControlPlane, TestWatch, type TestControlPlane } from '../control/support.js';

let t: TestControlPlane;
let tokens: TokenService;
let agent: RunningAgent | undefined;
const watches: TestWatch[] = [];

beforeAll(async () => {
  // Discovery is scoped by policy: let the wildcard agent call everything, so everything is in its config.
  const dir = mkdtempSync(join(tmpdir(), 'trellis-cp-'));
  t = await startTestControlPlane({ policyDir: allowAllPolicyDir(dir) }, dir);
  tokens = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local');
});

afterAll(async () => {
  for (const w of watches) w.close();
  await agent?.stop(0);
  await t.close();
  removeDir(t.dir);
});

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

/** Polls until `check` holds (the watch is asynchronous); fails with the last value seen. */
async function until<T>(read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!check(value)) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last: ${JSON.stringify(value).slice(0, 1500)}`);
    await new Promise((r) => setTimeout(r, 25));
    value = await read();
  }
  return value;
}

describe('a wildcard agent', () => {
  it('gains an upstream when a service joins the mesh and loses it when the service leaves', async () => {
    const dir = mkdtempSync(join(t.dir, 'agent-'));
    writeFileSync(join(dir, 'ca.pem'), t.cp.trustBundlePem);
    writeFileSync(join(dir, 'token'), (await tokens.create('frontend', 'shop', 3_600_000)).token);
    const parsed = parseAgentArgs(['--control', t.endpoint.url.toString(), '--ca-file', join(dir, 'ca.pem'), '--token-file', join(dir, 'token'), '--service', 'frontend', '--namespace', 'shop',
      '--address', '127.0.0.1', '--tunnel', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--no-access-log', '--log-level', 'silent']).config;
    // What `--capture transparent` with no --upstream means, without binding the fixed capture ports.
    agent = await startAgent({ ...parsed, upstreams: [{ ...ALL_UPSTREAMS, port: undefined, bindAddress: '127.0.0.1', localPort: undefined }] }, silentLogger());
    const admin = agent.addresses().agentAdmin?.port as number;
    const snapshot = async (): Promise<AgentSnapshot | undefined> => (await getJson<{ snapshot?: AgentSnapshot }>(admin, '/config')).snapshot;
    const payments = (s: AgentSnapshot | undefined) => s?.upstreams.find((u) => u.namespace === 'bank' && u.name === 'payments');
    // The sidecar runs the config the agent holds: its version metric names the same epoch.version.
    const sidecarVersion = async (): Promise<string | undefined> => {
      const text = await agent?.registry.metrics();
      return /trellis_config_info\{version="([^"]+)"\} 1/.exec(text ?? '')?.[1];
    };
    const inForce = (): string => {
      const config = agent?.status().config as { epoch: string; version: number };
      return `${config.epoch}.${config.version}`;
    };
    const connectedSince = (): unknown => (agent?.status().controlPlane as { since?: string }).since;

    const first = await until(snapshot, (s) => s !== undefined);
    // The agent itself is in the mesh now; nothing of bank yet.
    expect(payments(first)).toBeUndefined();
    const since = connectedSince();
    expect(since).toBeDefined();

    const pay = await issueWithToken(t.endpoint, (await tokens.create('payments', 'bank', 3_600_000)).token, 'spiffe://trellis.local/ns/bank/sa/payments');
    watches.push(await TestWatch.open(t.endpoint, pay, registration('pay-1', 41001, { ports: [{ port: 9090, protocol: 'http' }] })));
    const joined = await until(snapshot, (s) => payments(s)?.endpoints.length === 1);
    expect(payments(joined)).toMatchObject({ ports: [{ port: 9090, targetPort: 9090, protocol: 'http' }], endpoints: [{ address: '127.0.0.1', tunnelPort: 41001, healthy: true }] });
    await until(sidecarVersion, (v) => v === inForce());

    await controlRequest(t.endpoint, { method: 'DELETE', path: CONTROL_PATHS.endpoint('pay-1'), clientCert: pay });
    const left = await until(snapshot, (s) => payments(s) === undefined);
    expect(left?.upstreams.some((u) => u.namespace === 'shop' && u.name === 'frontend')).toBe(true);
    await until(sidecarVersion, (v) => v === inForce());
    // The same stream throughout: both changes applied as deltas, not by reconnecting for a snapshot.
    expect(agent.status().controlPlane).toMatchObject({ connected: true });
    expect(connectedSince()).toBe(since);
  });
});
