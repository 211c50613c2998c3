/**
 * The control plane's API over real HTTPS on loopback: issuance with join tokens (and every way a token
 * is refused), renewal authenticated by the current certificate alone, the watch (snapshot, endpoint
 * deltas, health, disconnect), and the admin credential.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTROL_PATHS, type AgentSnapshot, type CreateTokenResponse, type IssueResponse, type WatchDeltaMessage, type WatchSnapshotMessage } from '../../api/control-protocol.js';
import { ControlError, controlRequest } from '../../api/control-client.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { issueWithToken, registration, removeDir, startTestControlPlane, TestWatch, type TestControlPlane } from './support.js';

let t: TestControlPlane;
let tokens: TokenService;
const ID = (svc: string, ns = 'shop'): string => `spiffe://trellis.local/ns/${ns}/sa/${svc}`;

beforeAll(async () => {
  t = await startTestControlPlane({ disconnectGraceMs: 200 });
  tokens = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local');
});

afterAll(async () => {
  await t.close();
  removeDir(t.dir);
});

async function refusal(promise: Promise<unknown>): Promise<ControlError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ControlError);
  return err as ControlError;
}

describe('issuance with a join token', () => {
  it('issues a leaf for the token\'s service, with the chain and the trust bundle', async () => {
    const { token } = await tokens.create('orders', 'shop', 60_000);
    const { issued } = await issueWithToken(t.endpoint, token, ID('orders'));
    expect(issued.spiffeId).toBe(ID('orders'));
    const leaf = new X509Certificate(issued.certChainPem);
    expect(leaf.subjectAltName).toBe(`URI:${ID('orders')}`);
    expect(issued.trustBundlePem).toBe(readFileSync(join(t.dir, 'data', 'trust-bundle.pem'), 'utf8'));
    expect(issued.zone).toBe('default');
  });

  it('refuses an expired token', async () => {
    // Made ten seconds ago with a one-second lifetime.
    const past = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local', () => Date.now() - 10_000);
    const { token } = await past.create('orders', 'shop', 1_000);
    const err = await refusal(issueWithToken(t.endpoint, token, ID('orders')));
    expect(err.status).toBe(403);
    expect(err.code).toBe('TRELLIS_TOKEN_EXPIRED');
  });

  it('refuses a revoked token, and says so', async () => {
    const { token, record } = await tokens.create('orders', 'shop', 60_000);
    await tokens.revoke(record.id);
    const err = await refusal(issueWithToken(t.endpoint, token, ID('orders')));
    expect(err.status).toBe(403);
    expect(err.code).toBe('TRELLIS_TOKEN_REVOKED');
  });

  it('refuses a token used for another service than the one it names', async () => {
    const { token } = await tokens.create('payments', 'shop', 60_000);
    const err = await refusal(issueWithToken(t.endpoint, token, ID('orders')));
    expect(err.status).toBe(403);
    expect(err.code).toBe('TRELLIS_TOKEN_WRONG_SERVICE');
  });

  it('refuses a forged token and a missing credential', async () => {
    const { token } = await tokens.create('orders', 'shop', 60_000);
    const [prefix, claims] = token.split('.');
    const forgedClaims = Buffer.from(Buffer.from(claims as string, 'base64url').toString().replace('"orders"', '"payments"')).toString('base64url');
    const forged = await refusal(issueWithToken(t.endpoint, `${prefix}.${forgedClaims}.${token.split('.')[2]}`, ID('payments')));
    expect(forged.code).toBe('TRELLIS_TOKEN_BAD_SIGNATURE');
    const key = await generateWorkloadKey();
    const none = await refusal(controlRequest(t.endpoint, { method: 'POST', path: CONTROL_PATHS.issue, body: { csrPem: await createCsr(key, ID('orders')) } }));
    expect(none.status).toBe(401);
  });
});

describe('renewal over mutual TLS', () => {
  it('renews with the current certificate alone, even after the join token was spent and expired', async () => {
    // Made two seconds ago with a five-second lifetime: used now (three seconds of slack for a loaded
    // machine), then waited out so it is expired by the time of the renewal.
    const past = new TokenService(await FileStore.open(join(t.dir, 'data')), 'trellis.local', () => Date.now() - 2_000);
    const expiresAt = Date.now() + 3_000;
    const { token } = await past.create('orders', 'shop', 5_000);
    const first = await issueWithToken(t.endpoint, token, ID('orders'));
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 1_100));
    expect((await refusal(issueWithToken(t.endpoint, token, ID('orders')))).code).toBe('TRELLIS_TOKEN_EXPIRED');
    const key = await generateWorkloadKey();
    const renewed = await controlRequest<IssueResponse>(t.endpoint, { method: 'POST', path: CONTROL_PATHS.renew, body: { csrPem: await createCsr(key, ID('orders')) }, clientCert: first });
    expect(renewed.spiffeId).toBe(ID('orders'));
    expect(renewed.serial).not.toBe(first.issued.serial);
  });

  it('refuses renewal without a client certificate', async () => {
    const key = await generateWorkloadKey();
    const err = await refusal(controlRequest(t.endpoint, { method: 'POST', path: CONTROL_PATHS.renew, body: { csrPem: await createCsr(key, ID('orders')) } }));
    expect(err.status).toBe(401);
    expect(err.code).toBe('TRELLIS_CONTROL_CLIENT_CERT_REQUIRED');
  });
});

describe('the watch', () => {
  it('sends a snapshot, then endpoint deltas as instances come, fail their health check, and go', async () => {
    const { token: fe } = await tokens.create('frontend', 'shop', 60_000);
    const { token: or } = await tokens.create('orders', 'shop', 60_000);
    const frontend = await issueWithToken(t.endpoint, fe, ID('frontend'));
    const orders = await issueWithToken(t.endpoint, or, ID('orders'));
    const watch = await TestWatch.open(t.endpoint, frontend, registration('fe-1', 20001, { upstreams: [{ service: 'orders', namespace: 'shop' }] }));
    try {
      const snapshot = (await watch.next((m) => m.type === 'snapshot')) as WatchSnapshotMessage;
      const s: AgentSnapshot = snapshot.snapshot;
      expect(s.self.spiffeId).toBe(ID('frontend'));
      expect(s.upstreams).toEqual([{ name: 'orders', namespace: 'shop', ports: [], endpoints: [] }]);

      const ordersWatch = await TestWatch.open(t.endpoint, orders, registration('or-1', 20002));
      const added = (await watch.next((m) => m.type === 'delta' && (m.upstreams?.length ?? 0) > 0)) as WatchDeltaMessage;
      expect(added.upstreams?.[0]?.endpoints).toEqual([{ address: '127.0.0.1', tunnelPort: 20002, zone: 'default', healthy: true }]);
      expect(added.version).toBeGreaterThan(snapshot.version);

      await controlRequest(t.endpoint, { method: 'PUT', path: CONTROL_PATHS.endpoint('or-1'), body: { healthy: false, detail: 'connect ECONNREFUSED' }, clientCert: orders });
      const sick = (await watch.next((m) => m.type === 'delta' && m.endpoints?.[0]?.set?.healthy === false)) as WatchDeltaMessage;
      expect(sick.endpoints).toEqual([{ service: 'orders', namespace: 'shop', set: { address: '127.0.0.1', tunnelPort: 20002, zone: 'default', healthy: false } }]);

      await controlRequest(t.endpoint, { method: 'PUT', path: CONTROL_PATHS.endpoint('or-1'), body: { healthy: true }, clientCert: orders });
      await watch.next((m) => m.type === 'delta' && m.version > sick.version && m.endpoints?.[0]?.set?.healthy === true);

      // The agent disconnects: after the grace its endpoint leaves the healthy set.
      const before = watch.messages.length;
      ordersWatch.close();
      const gone = (await watch.next((m) => watch.messages.indexOf(m) >= before && m.type === 'delta' && m.endpoints?.[0]?.set?.healthy === false)) as WatchDeltaMessage;
      expect(gone.endpoints?.[0]?.service).toBe('orders');

      // Another workload cannot report health for or deregister someone else's instance.
      const err = await refusal(controlRequest(t.endpoint, { method: 'DELETE', path: CONTROL_PATHS.endpoint('or-1'), clientCert: frontend }));
      expect(err.status).toBe(403);
      await controlRequest(t.endpoint, { method: 'DELETE', path: CONTROL_PATHS.endpoint('or-1'), clientCert: orders });
      const removed = (await watch.next((m) => m.type === 'delta' && m.upstreams?.[0]?.ports.length === 0 && m.version > gone.version)) as WatchDeltaMessage;
      expect(removed.upstreams?.[0]?.endpoints).toEqual([]);
    } finally {
      watch.close();
    }
  });

  it('refuses a registration for another zone and lists every problem of a bad one', async () => {
    const { token } = await tokens.create('orders', 'shop', 60_000);
    const orders = await issueWithToken(t.endpoint, token, ID('orders'));
    await expect(TestWatch.open(t.endpoint, orders, registration('or-z', 20003, { zone: 'eu-west' }))).rejects.toThrow(/TRELLIS_CONTROL_WRONG_ZONE/);
    await expect(TestWatch.open(t.endpoint, orders, { ...registration('bad id!', 0), ports: [{ port: 70000, protocol: 'udp' as 'tcp' }] })).rejects.toThrow(/instanceId.*tunnelPort.*ports\[0\]/);
  });
});

describe('admin credential', () => {
  it('creates, lists and revokes tokens through the API; refuses without the credential', async () => {
    const admin = readFileSync(join(t.dir, 'data', 'admin-token'), 'utf8').trim();
    const created = await controlRequest<CreateTokenResponse>(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'orders', namespace: 'shop', ttlMs: 60_000 } });
    expect(created.service).toBe('orders');
    const { issued } = await issueWithToken(t.endpoint, created.token, ID('orders'));
    expect(issued.spiffeId).toBe(ID('orders'));
    await controlRequest(t.endpoint, { method: 'DELETE', path: CONTROL_PATHS.adminToken(created.id), bearer: admin });
    expect((await refusal(issueWithToken(t.endpoint, created.token, ID('orders')))).code).toBe('TRELLIS_TOKEN_REVOKED');
    expect((await refusal(controlRequest(t.endpoint, { method: 'GET', path: CONTROL_PATHS.adminTokens, bearer: 'nope' }))).status).toBe(401);
  });
});
