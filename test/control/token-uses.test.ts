/**
 * Join tokens have a use count and a lineage. Pinned after tokens were found reusable until expiry (up
 * to 365 days) with no rate limit: each bootstrap spends one use, durably, before the certificate leaves;
 * a spent token is refused (TRELLIS_TOKEN_SPENT); revoking a token refuses renewal of every certificate
 * issued through it (renewals included) and puts their serials on the agents' revoked list; refused
 * bootstraps from one address are rate limited (429).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTROL_PATHS, normaliseSerial, type IssueResponse, type WatchDeltaMessage, type WatchSnapshotMessage } from '../../api/control-protocol.js';
import { ControlError, controlRequest } from '../../api/control-client.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { runCli } from '../helpers/cli.js';
import { issueWithToken, registration, removeDir, startTestControlPlane, TestWatch, type IssuedTestIdentity, type TestControlPlane } from './support.js';

let t: TestControlPlane;
let store: FileStore;
let tokens: TokenService;
let admin: string;
const ID = (svc: string): string => `spiffe://trellis.local/ns/shop/sa/${svc}`;

beforeAll(async () => {
  t = await startTestControlPlane({ failedBootstrapLimit: { burst: 1_000, refillMs: 1_000, maxSources: 100 } });
  store = await FileStore.open(join(t.dir, 'data'));
  tokens = new TokenService(store, 'trellis.local');
  admin = readFileSync(join(t.dir, 'data', 'admin-token'), 'utf8').trim();
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

async function renew(current: IssuedTestIdentity, svc: string): Promise<IssuedTestIdentity> {
  const key = await generateWorkloadKey();
  const issued = await controlRequest<IssueResponse>(t.endpoint, { method: 'POST', path: CONTROL_PATHS.renew, body: { csrPem: await createCsr(key, ID(svc)) }, clientCert: current });
  return { issued, certChainPem: issued.certChainPem, keyPem: key.keyPem };
}

describe('join token uses', () => {
  it('a token allows one bootstrap by default, then is refused as spent; --uses N allows N', async () => {
    const { token, record } = await tokens.create('orders', 'shop', 60_000);
    await issueWithToken(t.endpoint, token, ID('orders'));
    const spent = await refusal(issueWithToken(t.endpoint, token, ID('orders')));
    expect(spent.status).toBe(403);
    expect(spent.code).toBe('TRELLIS_TOKEN_SPENT');
    expect(await store.getToken(record.id)).toMatchObject({ uses: 1, usesLeft: 0 });

    const created = await runCli(['token', 'create', '--service', 'orders', '--namespace', 'shop', '--uses', '2', '--data-dir', join(t.dir, 'data')]);
    expect(created.code).toBe(0);
    const two = created.stdout.trim();
    await issueWithToken(t.endpoint, two, ID('orders'));
    await issueWithToken(t.endpoint, two, ID('orders'));
    expect((await refusal(issueWithToken(t.endpoint, two, ID('orders')))).code).toBe('TRELLIS_TOKEN_SPENT');
    expect((await runCli(['token', 'create', '--service', 'orders', '--uses', '0', '--data-dir', join(t.dir, 'data')])).code).toBe(2);
    const listed = await runCli(['token', 'list', '--data-dir', join(t.dir, 'data')]);
    expect(listed.stdout).toMatch(/shop\/orders\s+\S+\s+spent/);
  });

  it('concurrent bootstraps with a one-use token: exactly one certificate', async () => {
    const { token } = await tokens.create('orders', 'shop', 60_000);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => issueWithToken(t.endpoint, token, ID('orders'))));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as ControlError).code).toBe('TRELLIS_TOKEN_SPENT');
  });

  it('the API takes "uses" and shows what is left', async () => {
    const created = await controlRequest<{ id: string; token: string; uses: number; usesLeft: number }>(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'orders', namespace: 'shop', ttlMs: 60_000, uses: 3 } });
    expect(created).toMatchObject({ uses: 3, usesLeft: 3 });
    await issueWithToken(t.endpoint, created.token, ID('orders'));
    const list = await controlRequest<{ tokens: { id: string; usesLeft: number; certificates: number }[] }>(t.endpoint, { method: 'GET', path: CONTROL_PATHS.adminTokens, bearer: admin });
    expect(list.tokens.find((x) => x.id === created.id)).toMatchObject({ usesLeft: 2, certificates: 1 });
  });
});

describe('revoking a token revokes its certificates', () => {
  it('refuses renewal of every certificate issued through it, renewals included, and pushes their serials to agents', async () => {
    const created = await controlRequest<{ id: string; token: string }>(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'billing', namespace: 'shop', ttlMs: 60_000, uses: 2 } });
    const first = await issueWithToken(t.endpoint, created.token, ID('billing'));
    const renewed = await renew(first, 'billing');
    const sibling = await issueWithToken(t.endpoint, created.token, ID('billing'));
    // An unrelated workload keeps renewing and watching.
    const { token: otherToken } = await tokens.create('frontend', 'shop', 60_000);
    const frontend = await issueWithToken(t.endpoint, otherToken, ID('frontend'));
    const watch = await TestWatch.open(t.endpoint, frontend, registration('fe-rev', 21001));
    try {
      const snapshot = (await watch.next((m) => m.type === 'snapshot')) as WatchSnapshotMessage;
      expect(snapshot.snapshot.revokedSerials ?? []).toEqual([]);

      await controlRequest(t.endpoint, { method: 'DELETE', path: CONTROL_PATHS.adminToken(created.id), bearer: admin });
      for (const cert of [first, renewed, sibling]) {
        const err = await refusal(renew(cert, 'billing'));
        expect(err.status).toBe(403);
        expect(err.code).toBe('TRELLIS_TOKEN_REVOKED');
      }
      const delta = (await watch.next((m) => m.type === 'delta' && m.revokedSerials !== undefined)) as WatchDeltaMessage;
      expect(delta.revokedSerials?.map((r) => r.serial).sort()).toEqual([first, renewed, sibling].map((c) => normaliseSerial(c.issued.serial)).sort());
      for (const r of delta.revokedSerials ?? []) expect(Date.parse(r.notAfter)).toBeGreaterThan(Date.now());
      // A reconnecting agent gets the list in its snapshot.
      const again = await TestWatch.open(t.endpoint, frontend, registration('fe-rev-2', 21002));
      try {
        expect(((await again.next((m) => m.type === 'snapshot')) as WatchSnapshotMessage).snapshot.revokedSerials).toHaveLength(3);
      } finally {
        again.close();
      }
      expect((await renew(frontend, 'frontend')).issued.spiffeId).toBe(ID('frontend'));
    } finally {
      watch.close();
    }
  });
});

describe('failed bootstraps per source address', () => {
  it('are limited by a token bucket: 429 with retry-after once the burst is spent, good tokens included', async () => {
    const limited = await startTestControlPlane({ failedBootstrapLimit: { burst: 3, refillMs: 60_000, maxSources: 100 } });
    try {
      const local = new TokenService(await FileStore.open(join(limited.dir, 'data')), 'trellis.local');
      const { token } = await local.create('orders', 'shop', 60_000);
      const bad = `${token.slice(0, -4)}AAAA`;
      for (let i = 0; i < 3; i++) expect((await refusal(issueWithToken(limited.endpoint, bad, ID('orders')))).status).toBe(403);
      const limitedErr = await refusal(issueWithToken(limited.endpoint, token, ID('orders')));
      expect(limitedErr.status).toBe(429);
      expect(limitedErr.code).toBe('TRELLIS_CONTROL_BOOTSTRAP_RATE_LIMITED');
      expect(limitedErr.retryable).toBe(true);
      // The good token was not looked at, so it is still unspent.
      expect((await local.list())[0]).toMatchObject({ usesLeft: 1 });
    } finally {
      await limited.close();
      removeDir(limited.dir);
    }
  });
});
