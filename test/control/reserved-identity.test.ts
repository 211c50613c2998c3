/**
 * The mesh's own identities cannot be had through a bootstrap credential. Pinned after a join token for
 * `trellis-system/trellis-control` was accepted and its certificate impersonated the control plane to a
 * new agent. Refused at token creation (CLI offline and online, API) and again at issuance, for a token
 * record that got into the store some other way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTROL_PATHS } from '../../api/control-protocol.js';
import { ControlError, controlRequest } from '../../api/control-client.js';
import { FileStore } from '../../control/file-store.js';
import { signJoinToken } from '../../control/join-token.js';
import { TokenService } from '../../control/token-service.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { IdentityIssuer } from '../../control/identity-issuer.js';
import { runCli } from '../helpers/cli.js';
import { createTestPki } from '../helpers/pki.js';
import { issueWithToken, removeDir, startTestControlPlane, type TestControlPlane } from './support.js';

let t: TestControlPlane;
let store: FileStore;
let tokens: TokenService;
const CONTROL_ID = 'spiffe://trellis.local/ns/trellis-system/sa/trellis-control';

beforeAll(async () => {
  t = await startTestControlPlane();
  store = await FileStore.open(join(t.dir, 'data'));
  tokens = new TokenService(store, 'trellis.local');
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

describe('reserved identities', () => {
  it('a join token for the control plane (or anything in the root namespace) is refused at creation', async () => {
    await expect(tokens.create('trellis-control', 'trellis-system', 60_000)).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    await expect(tokens.create('anything', 'trellis-system', 60_000)).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    // A control plane with another root namespace reserves it, and trellis-system still.
    const custom = new TokenService(store, 'trellis.local', Date.now, 'mesh-root');
    await expect(custom.create('trellis-control', 'mesh-root', 60_000)).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    await expect(custom.create('trellis-control', 'trellis-system', 60_000)).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    expect((await tokens.list()).filter((r) => r.namespace === 'trellis-system' || r.namespace === 'mesh-root')).toEqual([]);
  });

  it('the API and the CLI refuse it too', async () => {
    const admin = readFileSync(join(t.dir, 'data', 'admin-token'), 'utf8').trim();
    const api = await refusal(controlRequest(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'trellis-control', namespace: 'trellis-system', ttlMs: 60_000 } }));
    expect(api.status).toBe(400);
    expect(api.code).toBe('TRELLIS_IDENTITY_RESERVED');
    const offline = await runCli(['token', 'create', '--service', 'trellis-control', '--namespace', 'trellis-system', '--data-dir', join(t.dir, 'data')]);
    expect(offline.code).toBe(2);
    expect(offline.stderr).toContain('TRELLIS_IDENTITY_RESERVED');
    expect(offline.stdout).toBe('');
  });

  it("the zone ingress's identity: only `--ingress` makes its token, offline, online and through the API", async () => {
    const dataDir = join(t.dir, 'data');
    const admin = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const workloadStyle = await runCli(['token', 'create', '--service', 'trellis-ingress', '--namespace', 'trellis-system', '--data-dir', dataDir]);
    expect(workloadStyle.code).toBe(2);
    expect(workloadStyle.stderr).toMatch(/TRELLIS_IDENTITY_RESERVED[\s\S]*--ingress|--ingress[\s\S]*TRELLIS_IDENTITY_RESERVED/);
    expect(workloadStyle.stdout).toBe('');
    const mixed = await runCli(['token', 'create', '--ingress', '--service', 'orders', '--data-dir', dataDir]);
    expect(mixed.code).toBe(2);
    const offline = await runCli(['token', 'create', '--ingress', '--data-dir', dataDir]);
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stderr).toMatch(/for the zone ingress, trellis-system\/trellis-ingress/);
    const online = await runCli(['token', 'create', '--ingress', '--control', t.endpoint.url.toString(), '--data-dir', dataDir]);
    expect(online.code, online.stderr).toBe(0);
    expect(online.stderr).toMatch(/for the zone ingress, trellis-system\/trellis-ingress/);
    const made = (await tokens.list()).filter((r) => r.service === 'trellis-ingress');
    expect(made.map((r) => r.role)).toEqual(['ingress', 'ingress']);
    const api = await refusal(controlRequest(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'trellis-ingress', namespace: 'trellis-system', ttlMs: 60_000 } }));
    expect([api.status, api.code]).toEqual([400, 'TRELLIS_IDENTITY_RESERVED']);
    const wrongRole = await refusal(controlRequest(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'orders', namespace: 'shop', ttlMs: 60_000, role: 'ingress' } }));
    expect([wrongRole.status, wrongRole.code]).toEqual([400, 'TRELLIS_IDENTITY_RESERVED']);
    const unknownRole = await refusal(controlRequest(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'orders', namespace: 'shop', ttlMs: 60_000, role: 'control' } }));
    expect(unknownRole.status).toBe(400);
  });

  it('a token record for a reserved identity that reached the store anyway is refused at issuance', async () => {
    const now = Math.floor(Date.now() / 1000);
    await store.putToken({ id: 'smuggled', service: 'trellis-control', namespace: 'trellis-system', createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 60_000).toISOString() });
    const token = signJoinToken({ id: 'smuggled', trustDomain: 'trellis.local', namespace: 'trellis-system', service: 'trellis-control', issuedAt: now, expiresAt: now + 60 }, await store.secret('token-signing-key'));
    const err = await refusal(issueWithToken(t.endpoint, token, CONTROL_ID));
    expect(err.status).toBe(403);
    expect(err.code).toBe('TRELLIS_IDENTITY_RESERVED');
  });

  it('the issuer refuses a reserved identity whatever authenticated it (a service-account token of trellis-system)', async () => {
    const pki = await createTestPki({ trustDomain: 'trellis.local' });
    const issuer = new IdentityIssuer({ ca: pki.intermediate, zone: 'z', workloadTtlMs: 60_000, trustBundlePem: () => pki.bundlePem });
    const csr = await createCsr(await generateWorkloadKey(), CONTROL_ID);
    await expect(issuer.issue(csr, 'trellis-system', 'trellis-control')).rejects.toMatchObject({ code: 'TRELLIS_IDENTITY_RESERVED' });
    await expect(issuer.issue(csr, 'shop', 'orders')).rejects.toMatchObject({ code: 'TRELLIS_CA_CSR_SAN_MISMATCH' });
  });
});
