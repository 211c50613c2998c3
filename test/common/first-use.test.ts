/**
 * What a new user ran into on a first try, each pinned: a foreign trust domain allowed by `explain`, a
 * missing --policy directory found only after the CA was written, an agent without --ca-file blamed on the
 * control plane, an untrusted control plane retried forever, and a --token-file typo retried forever.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki } from '../helpers/pki.js';
import { runCli } from '../helpers/cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-first-use-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const POLICY = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  rules:
    - action: allow
      from: [orders]
`;

describe('trellis explain', () => {
  it('denies a caller from a foreign trust domain when --trust-domain is not given', async () => {
    await mkdir(join(dir, 'policy'), { recursive: true });
    await writeFile(join(dir, 'policy', 'payments.yaml'), POLICY);
    const own = await runCli(['explain', '--policy', join(dir, 'policy'), '--from', 'spiffe://trellis.local/ns/shop/sa/orders', '--to', 'shop/payments']);
    expect(own.stdout).toMatch(/^ALLOW/);
    const foreign = await runCli(['explain', '--policy', join(dir, 'policy'), '--from', 'spiffe://other.org/ns/shop/sa/orders', '--to', 'shop/payments']);
    expect(foreign.code).toBe(0);
    expect(foreign.stdout).toMatch(/^DENY/);
    const exitCode = await runCli(['explain', '--policy', join(dir, 'policy'), '--from', 'spiffe://other.org/ns/shop/sa/orders', '--to', 'shop/payments', '--exit-code']);
    expect(exitCode.code).toBe(3);
  });
});

describe('trellis control run', () => {
  it('refuses a missing --policy directory before writing anything', async () => {
    const dataDir = join(dir, 'control-data');
    const { code, stderr } = await runCli(['control', 'run', '--data-dir', dataDir, '--policy', join(dir, 'no-such-policy'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    expect(code).toBe(2);
    expect(stderr).toContain(`--policy: ${join(dir, 'no-such-policy')} does not exist`);
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe('trellis agent run, first contact', () => {
  const agentArgs = (extra: string[]): string[] => ['agent', 'run', '--service', 'orders', '--namespace', 'shop', '--trust-domain', 'example.org', '--admin', 'off', '--tunnel', '127.0.0.1:0', '--log-level', 'silent', ...extra];
  let server: Server | undefined;
  afterAll(() => server?.close());

  it('without --ca-file names the missing flag (nothing was sent to the control plane)', async () => {
    await writeFile(join(dir, 'orders.token'), 'not-a-real-token\n');
    const { code, stderr } = await runCli(agentArgs(['--control', 'https://127.0.0.1:9', '--token-file', join(dir, 'orders.token')]));
    expect(code).toBe(2);
    expect(stderr).toContain('give --ca-file');
    expect(stderr).not.toContain('refused');
  });

  it('fails at once with exit 2 naming a --token-file that does not exist', async () => {
    const pki = await createTestPki({ trustDomain: 'example.org' });
    await writeFile(join(dir, 'bundle.pem'), pki.bundlePem);
    const started = Date.now();
    const { code, stderr } = await runCli(agentArgs(['--control', 'https://127.0.0.1:9', '--ca-file', join(dir, 'bundle.pem'), '--token-file', join(dir, 'orders.tokn')]));
    expect(code).toBe(2);
    expect(stderr).toContain(`--token-file ${join(dir, 'orders.tokn')}: no such file`);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('fails with exit 2 when the control plane does not verify against --ca-file, instead of retrying forever', async () => {
    const mesh = await createTestPki({ trustDomain: 'example.org' });
    const other = await createTestPki({ trustDomain: 'example.org' });
    const control = await other.issue('trellis-control', 'trellis-system');
    server = createServer({ cert: control.certChainPem, key: control.keyPem }, (_req, res) => res.end('{}'));
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await writeFile(join(dir, 'mesh-bundle.pem'), mesh.bundlePem);
    await writeFile(join(dir, 'orders.token'), 'not-a-real-token\n');
    const { code, stderr } = await runCli(agentArgs(['--control', `https://127.0.0.1:${port}`, '--ca-file', join(dir, 'mesh-bundle.pem'), '--token-file', join(dir, 'orders.token')]));
    expect(code).toBe(2);
    expect(stderr).toContain('does not verify against the roots in --ca-file');
  });
});
