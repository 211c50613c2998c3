/**
 * Root rotation reaching running agents, over real HTTPS and real TLS on loopback: the operator adds a new
 * root to the CA dir's bundle.pem, the control plane takes it (API trust, GET /v1/trust-bundle), pushes it
 * as a delta to every watch, and a running agent's sidecar applies it: a peer whose certificate comes
 * from the new root, refused by the tunnel before, completes a session after. A garbage bundle.pem is
 * refused and counted, and changes nothing anywhere.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CONTROL_PATHS, type WatchDeltaMessage } from '../../api/control-protocol.js';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import { parseAgentArgs } from '../../cli/agent-run.js';
import { silentLogger } from '../../common/log.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { createTestPki, type TestPki, type TestWorkloadIdentity } from '../helpers/pki.js';
import { issueWithToken, registration, removeDir, startTestControlPlane, TestWatch, type TestControlPlane } from '../control/support.js';

let oldRoot: TestPki;
let newRoot: TestPki;
let caDir: string;
let t: TestControlPlane;
let tokens: TokenService;
let agent: RunningAgent;
let watch: TestWatch;

beforeAll(async () => {
  oldRoot = await createTestPki({ trustDomain: 'trellis.local' });
  newRoot = await createTestPki({ trustDomain: 'trellis.local' });
  const dir = mkdtempSync(join(tmpdir(), 'trellis-rotation-'));
  caDir = join(dir, 'ca');
  await oldRoot.root.save(caDir);
  t = await startTestControlPlane({ caDir }, dir);
  tokens = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local');
  writeFileSync(join(dir, 'ca.pem'), t.cp.trustBundlePem);
  writeFileSync(join(dir, 'token'), (await tokens.create('payments', 'shop', 3_600_000)).token);
  agent = await startAgent(parseAgentArgs(['--control', t.endpoint.url.toString(), '--ca-file', join(dir, 'ca.pem'), '--token-file', join(dir, 'token'), '--service', 'payments', '--namespace', 'shop',
    '--address', '127.0.0.1', '--tunnel', '127.0.0.1:0', '--admin', 'off', '--no-access-log', '--log-level', 'silent']).config, silentLogger());
  await vi.waitFor(() => expect(agent.status().ready).toBe(true), { timeout: 10_000 });
  const orders = await issueWithToken(t.endpoint, (await tokens.create('orders', 'shop', 3_600_000)).token, 'spiffe://trellis.local/ns/shop/sa/orders');
  watch = await TestWatch.open(t.endpoint, orders, registration('orders-1', 41002));
});

afterAll(async () => {
  watch?.close();
  await agent?.stop(0);
  await t?.close();
  if (t !== undefined) removeDir(t.dir);
});

/** Whether the agent's tunnel completes an HTTP/2 session with a client certificate from `peer`. */
function tunnelAccepts(peer: TestWorkloadIdentity): Promise<boolean> {
  const port = agent.addresses().tunnel?.port as number;
  return new Promise((resolve) => {
    const session = h2connect(`https://127.0.0.1:${port}`, { ca: oldRoot.bundlePem, cert: peer.certChainPem, key: peer.keyPem, checkServerIdentity: () => undefined });
    const done = (accepted: boolean): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(accepted);
    };
    // The server sends its SETTINGS only once it has accepted the client's certificate.
    session.once('remoteSettings', () => done(true));
    session.once('close', () => done(false));
    session.once('error', () => done(false));
    const timer = setTimeout(() => done(false), 5_000);
  });
}

const rejectedReloads = async (): Promise<string> => (await t.cp.metrics.getSingleMetricAsString('trellis_control_trust_bundle_reloads_total'));

describe('root rotation', () => {
  it('pushes a bundle.pem with a new root to agents, whose sidecars then trust peers under it', async () => {
    const underNewRoot = await newRoot.issue('orders', 'shop');
    const underOldRoot = await oldRoot.issue('orders', 'shop');
    expect(await tunnelAccepts(underOldRoot)).toBe(true);
    expect(await tunnelAccepts(underNewRoot)).toBe(false);

    writeFileSync(join(caDir, 'bundle.pem'), oldRoot.bundlePem + newRoot.bundlePem);
    const delta = (await watch.next((m) => m.type === 'delta' && m.trustBundlePem !== undefined, 10_000)) as WatchDeltaMessage;
    expect(delta.trustBundlePem).toBe(oldRoot.bundlePem + newRoot.bundlePem);
    expect(t.cp.trustBundlePem).toBe(oldRoot.bundlePem + newRoot.bundlePem);
    expect(await fetchBundle()).toBe(oldRoot.bundlePem + newRoot.bundlePem);
    expect(await rejectedReloads()).toMatch(/result="applied"} 1/);

    await vi.waitFor(async () => expect(await tunnelAccepts(underNewRoot)).toBe(true), { timeout: 10_000, interval: 100 });
    expect(await tunnelAccepts(underOldRoot)).toBe(true);
    expect(agent.status().controlPlane).toMatchObject({ connected: true });
  });

  it('refuses a garbage bundle.pem: counted, nothing pushed, the bundle in force stays', async () => {
    const before = watch.messages.length;
    writeFileSync(join(caDir, 'bundle.pem'), 'this is not PEM\n');
    await vi.waitFor(async () => expect(await rejectedReloads()).toMatch(/result="rejected"} 1/), { timeout: 10_000, interval: 50 });
    expect(t.cp.trustBundlePem).toBe(oldRoot.bundlePem + newRoot.bundlePem);
    expect(await fetchBundle()).toBe(oldRoot.bundlePem + newRoot.bundlePem);
    expect(watch.messages.slice(before).filter((m) => m.type === 'delta')).toEqual([]);
  });
});

/** `GET /v1/trust-bundle` (public, PEM), trusting the control plane by the bundle it started with. */
function fetchBundle(): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: t.cp.apiAddress.port, path: CONTROL_PATHS.trustBundle, ca: oldRoot.bundlePem, checkServerIdentity: () => undefined, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}
