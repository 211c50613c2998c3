/**
 * `trellis injector run` and `trellis injector wait-ready` as real processes (the built CLI): bad options
 * refused with exit 2 and every problem listed; a running injector that issues its certificate from a CA
 * directory, detects the Kubernetes version and writes the caBundle through a kubeconfig pointing at the
 * fake API server, answers a real AdmissionReview, serves metrics, and stops cleanly on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { issueServingCertificate, serviceDnsNames } from '../../injector/serving-certificate-issuer.js';
import { startFakeKubeApi, FAKE_TOKEN, type FakeKubeApi } from './fake-kube-api.js';
import { callWebhook } from './https-client.js';
import { loadReview, applyPatch, validatePod, container } from './review-helpers.js';
import type { AdmissionReviewResponse } from '../../injector/admission-review.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const children: ChildProcess[] = [];
let dir: string;
let pki: TestPki;
let api: FakeKubeApi;

function spawnCli(args: string[]): { child: ChildProcess; stderr: () => string } {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: join(dir, 'none') } });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, stderr: () => stderr };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (code) => r(code))));
}

function ready(child: ChildProcess, stderr: () => string): Promise<{ webhook: number; admin: number }> {
  return new Promise((resolvePromise, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolvePromise(JSON.parse(line) as { webhook: number; admin: number }));
    child.once('exit', (code) => reject(new Error(`injector exited with ${code}: ${stderr()}`)));
  });
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), 'trellis-injector-cli-'));
  pki = await createTestPki();
  writeFileSync(join(dir, 'ca.crt'), pki.intermediate.certChainPem);
  writeFileSync(join(dir, 'ca.key'), pki.intermediate.exportKeyPem(), { mode: 0o600 });
  writeFileSync(join(dir, 'bundle.pem'), pki.bundlePem);
  const apiCert = await issueServingCertificate({ certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem }, ['127.0.0.1'], 3_600_000);
  api = await startFakeKubeApi(apiCert);
  writeFileSync(
    join(dir, 'kubeconfig'),
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: api.url, 'certificate-authority-data': Buffer.from(pki.bundlePem).toString('base64') } }],
      users: [{ name: 'injector', user: { token: FAKE_TOKEN } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'injector' } }],
      'current-context': 'fake',
    }),
  );
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
  }
});

afterAll(async () => {
  await api?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('trellis injector run', () => {
  it('refuses bad options with exit 2, listing every problem', async () => {
    const { child, stderr } = spawnCli(['injector', 'run', '--cert', 'x.pem', '--issuer-dir', dir, '--cert-ttl', 'soon', '--kubernetes-version', 'latest']);
    expect(await exited(child)).toBe(2);
    for (const part of ['either --cert/--key or --issuer-dir', '--cert and --key go together', '--cert-ttl', 'not a Kubernetes version', '--image is required']) expect(stderr()).toContain(part);
  });

  it('serves the webhook with a certificate from the mesh CA, keeps the caBundle, and stops on SIGTERM', async () => {
    const manifest = parse(readFileSync(join(ROOT, 'deploy/kubernetes/base/injector-webhook.yaml'), 'utf8')) as Record<string, unknown>;
    api.webhookConfigurations.set('trellis-injector', { ...manifest, metadata: { ...(manifest.metadata as object), uid: 'u', resourceVersion: '7' } });
    const { child, stderr } = spawnCli([
      'injector',
      'run',
      '--issuer-dir',
      dir,
      '--image',
      'ghcr.io/example/trellis:0.1.0',
      '--zone',
      'west',
      '--kubeconfig',
      join(dir, 'kubeconfig'),
      '--listen',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
      '--log-level',
      'silent',
    ]);
    const ports = await ready(child, stderr);
    // The fake API server said 1.30: native sidecars.
    const review = loadReview('deployment-pod.json');
    const namespace = review.request.namespace ?? '';
    api.namespaces.set(namespace, { kind: 'Namespace', apiVersion: 'v1', metadata: { name: namespace, labels: { 'kubernetes.io/metadata.name': namespace, 'trellis.dev/injection': 'enabled' } } });
    const stored = api.webhookConfigurations.get('trellis-injector') as { webhooks: { clientConfig: { caBundle: string } }[] };
    const caBundle = Buffer.from(stored.webhooks[0]!.clientConfig.caBundle, 'base64').toString('utf8');
    expect(caBundle).toBe(pki.bundlePem);
    const reply = await callWebhook({ port: ports.webhook, ca: caBundle, path: '/inject', body: JSON.stringify(review) });
    expect(reply.status).toBe(200);
    const answer = JSON.parse(reply.body) as AdmissionReviewResponse;
    const pod = applyPatch(review.request.object, JSON.parse(Buffer.from(answer.response.patch ?? '', 'base64').toString('utf8')));
    validatePod(pod);
    expect(container(pod, 'trellis-proxy')?.restartPolicy).toBe('Always');
    expect(container(pod, 'trellis-proxy')?.args).toEqual(expect.arrayContaining(['--zone', 'west']));
    expect(pod.metadata?.annotations?.['trellis.dev/ca-bundle']).toBe(pki.bundlePem);
    const metrics = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
    expect(metrics).toMatch(/trellis_injector_admissions_total\{result="injected"\} 1/);
    // The namespace was read (Pod Security level, capture mode) as the injector, not as node-fetch.
    const read = api.requests.find((r) => r.path === `/api/v1/namespaces/${namespace}`);
    expect(read?.userAgent).toMatch(/^trellis-injector\/0\.1\.0 /);
    expect((await fetch(`http://127.0.0.1:${ports.admin}/ready`)).status).toBe(200);
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
  });

  it('runs from --cert/--key files without API access when the version is given (classic layout on 1.28)', async () => {
    const serving = await issueServingCertificate(
      { certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem },
      serviceDnsNames('trellis-injector', 'trellis-system'),
      3_600_000,
    );
    writeFileSync(join(dir, 'tls.crt'), serving.certChainPem);
    writeFileSync(join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
    const { child, stderr } = spawnCli([
      'injector',
      'run',
      '--cert',
      join(dir, 'tls.crt'),
      '--key',
      join(dir, 'tls.key'),
      '--ca-bundle',
      join(dir, 'bundle.pem'),
      '--image',
      'trellis:t',
      '--kubernetes-version',
      '1.28',
      '--webhook-config',
      'off',
      '--listen',
      '127.0.0.1:0',
      '--admin',
      'off',
      '--log-level',
      'silent',
    ]);
    const ports = await ready(child, stderr);
    expect(ports.admin).toBeNull();
    const review = loadReview('job-pod.json');
    const reply = await callWebhook({ port: ports.webhook, ca: pki.bundlePem, path: '/inject', body: JSON.stringify(review) });
    const answer = JSON.parse(reply.body) as AdmissionReviewResponse;
    const pod = applyPatch(review.request.object, JSON.parse(Buffer.from(answer.response.patch ?? '', 'base64').toString('utf8')));
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(['trellis-proxy', 'report']);
    expect(answer.response.warnings?.join()).toMatch(/quitquitquit/);
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
  });

  it('fails at start, exit 1, when it cannot reach the API server to detect the version', async () => {
    writeFileSync(join(dir, 'kubeconfig-dead'), readFileSync(join(dir, 'kubeconfig'), 'utf8').replace(api.url, 'https://127.0.0.1:1'));
    const { child, stderr } = spawnCli(['injector', 'run', '--issuer-dir', dir, '--image', 'trellis:t', '--kubeconfig', join(dir, 'kubeconfig-dead'), '--listen', '127.0.0.1:0', '--admin', 'off']);
    expect(await exited(child)).toBe(1);
    expect(stderr()).toMatch(/TRELLIS_INJECTOR_VERSION_UNKNOWN/);
  });
});

describe('trellis injector wait-ready', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
    server = undefined;
  });

  it('waits until the status port says ready', async () => {
    let calls = 0;
    server = createServer((_req, res) => {
      calls++;
      res.writeHead(calls < 3 ? 503 : 200).end();
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const { child } = spawnCli(['injector', 'wait-ready', '--url', `http://127.0.0.1:${port}/ready`, '--timeout', '20s', '--interval', '50ms']);
    expect(await exited(child)).toBe(0);
    expect(calls).toBe(3);
  });

  it('gives up after the timeout with exit 1 and says why', async () => {
    const { child, stderr } = spawnCli(['injector', 'wait-ready', '--url', 'http://127.0.0.1:1/ready', '--timeout', '300ms', '--interval', '50ms']);
    expect(await exited(child)).toBe(1);
    expect(stderr()).toMatch(/not ready after 300ms/);
  });
});
