/**
 * Traffic resources travel to agents as their authors wrote them, and each agent validates them again.
 * The control plane's validated form is normalised (durations in ms, defaults filled in) and is not
 * something the validator reads: shipping that made every agent refuse a snapshot holding a RetryPolicy,
 * TimeoutPolicy or OutlierDetection. Checked here as a round trip for every kind, and end to end: a real
 * control plane over HTTPS with all six kinds in its policy directory, and a real agent that must take
 * the snapshot and a later change.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ALL_UPSTREAMS } from '../../api/control-protocol.js';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import { parseAgentArgs } from '../../cli/agent-run.js';
import { silentLogger } from '../../common/log.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { parseTrafficFiles, validateTrafficObjects, writtenForm } from '../../policy/traffic/index.js';
import { allowAllPolicyDir, removeDir, startTestControlPlane, type TestControlPlane } from './support.js';

const EVERY_KIND = `apiVersion: trellis.dev/v1alpha1
kind: TimeoutPolicy
metadata: { name: orders-timeouts, namespace: shop }
spec: { destination: orders, connect: 2s, request: 5s, perTry: 1s, idle: 10m }
---
apiVersion: trellis.dev/v1alpha1
kind: RetryPolicy
metadata: { name: orders-retries, namespace: shop, labels: { team: a } }
spec:
  destination: orders
  attempts: 3
  perTryTimeout: 800ms
  backoff: { base: 50ms, max: 1s }
  budget: { window: 30s }
---
apiVersion: trellis.dev/v1alpha1
kind: OutlierDetection
metadata: { name: orders-outliers, namespace: shop }
spec: { destination: orders, interval: 5s, baseEjectionTime: 10s, maxEjectionTime: 2m }
---
apiVersion: trellis.dev/v1alpha1
kind: CircuitBreaker
metadata: { name: all-breaker, namespace: shop }
spec: { destination: '*' }
---
apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: orders-canary, namespace: shop }
spec:
  destination: orders
  rules:
    - backends: [{ labels: { version: v1 }, weight: 90 }, { labels: { version: v2 }, weight: 10 }]
---
apiVersion: trellis.dev/v1alpha1
kind: ZoneFailover
metadata: { name: orders-failover, namespace: shop }
spec: { destination: orders, order: [east, west, '*'], threshold: '30%' }
`;

describe('traffic resources as written', () => {
  it('validate again, after a JSON round trip, into resources equal to the ones the control plane holds', () => {
    const parsed = parseTrafficFiles([{ path: 'every-kind.yaml', text: EVERY_KIND }]);
    expect(parsed.map((r) => r.kind).sort()).toEqual(['CircuitBreaker', 'OutlierDetection', 'RetryPolicy', 'TimeoutPolicy', 'TrafficRoute', 'ZoneFailover']);
    const wire = JSON.parse(JSON.stringify(parsed.map(writtenForm))) as unknown[];
    expect(validateTrafficObjects(wire, 'snapshot')).toEqual(parsed);
    // And again from what the agent made: the written form is kept through any number of hops.
    const again = validateTrafficObjects(wire, 'snapshot');
    expect(validateTrafficObjects(JSON.parse(JSON.stringify(again.map(writtenForm))) as unknown[], 'snapshot')).toEqual(parsed);
  });

  it('the normalised form is not accepted as input (so it must never be what travels)', () => {
    const parsed = parseTrafficFiles([{ path: 'every-kind.yaml', text: EVERY_KIND }]);
    const timeouts = parsed.find((r) => r.kind === 'TimeoutPolicy');
    expect(() => validateTrafficObjects([JSON.parse(JSON.stringify(timeouts))], 'snapshot')).toThrow(/connectMs: unknown field/);
  });
});

describe('a real agent takes a snapshot holding every traffic kind', () => {
  let t: TestControlPlane | undefined;
  let agent: RunningAgent | undefined;
  afterAll(async () => {
    await agent?.stop(0);
    await t?.close();
    if (t !== undefined) removeDir(t.dir);
  });

  it('is ready on it, and applies a later change that adds one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-cp-'));
    const policyDir = allowAllPolicyDir(dir);
    writeFileSync(join(policyDir, 'traffic.yaml'), EVERY_KIND);
    t = await startTestControlPlane({ policyDir }, dir);
    const tokens = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local');
    const agentDir = join(dir, 'agent');
    mkdirSync(agentDir);
    writeFileSync(join(agentDir, 'ca.pem'), t.endpoint.trustBundlePem);
    writeFileSync(join(agentDir, 'token'), (await tokens.create('frontend', 'shop', 60_000)).token);
    const parsed = parseAgentArgs(['--control', t.endpoint.url.toString(), '--ca-file', join(agentDir, 'ca.pem'), '--token-file', join(agentDir, 'token'), '--service', 'frontend', '--namespace', 'shop',
      '--address', '127.0.0.1', '--tunnel', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--no-access-log', '--log-level', 'silent']).config;
    // Every service of the mesh, as under transparent capture: the snapshot then carries every traffic resource.
    const running = await startAgent({ ...parsed, upstreams: [{ ...ALL_UPSTREAMS, port: undefined, bindAddress: '127.0.0.1', localPort: undefined }] }, silentLogger());
    agent = running;
    const version = (): unknown => (running.status().config as { version?: unknown }).version;
    await expect.poll(version, { timeout: 15_000 }).toBeDefined();
    expect(running.status().ready).toBe(true);
    const first = version();

    writeFileSync(join(policyDir, 'more.yaml'), `apiVersion: trellis.dev/v1alpha1
kind: RetryPolicy
metadata: { name: payments-retries, namespace: shop }
spec: { destination: payments, attempts: 2, backoff: { base: 10ms } }
`);
    await expect.poll(version, { timeout: 15_000 }).not.toBe(first);
  });
});
