/**
 * `trellis check` with findings and fixes. VMs: a control plane admin API and agent admin APIs on
 * loopback answering the control plane's real JSON, and a TLS listener with certificates from the test
 * PKI (trusted, foreign, near expiry). Kubernetes: the fake API server (real HTTPS, the API's JSON) with
 * Deployments, a DaemonSet, the webhook configuration and labelled namespaces at each Pod Security level.
 * And the built CLI: the text report and the exit status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { issueServingCertificate } from '../../injector/serving-certificate-issuer.js';
import { startFakeKubeApi, type FakeKubeApi } from '../injector/fake-kube-api.js';
import { controlFindings } from '../../cli/check-control.js';
import { kubernetesFindings } from '../../cli/check-kubernetes.js';
import type { Finding } from '../../cli/check-findings.js';

const MAIN = join(resolve(fileURLToPath(new URL('../..', import.meta.url))), 'dist/cli/main.js');
const DAY = 86_400_000;

/** The CLI, run without blocking this process: the fake servers it talks to live here. */
function cli(args: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      done({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

function jsonServer(routes: Record<string, () => [number, unknown]>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const route = routes[req.url ?? ''];
    const [status, body] = route === undefined ? [404, { error: 'no route' }] : route();
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

function find(findings: readonly Finding[], check: string): Finding {
  const found = findings.find((f) => f.check === check);
  if (found === undefined) throw new Error(`no finding "${check}" in ${JSON.stringify(findings, null, 2)}`);
  return found;
}

let pki: TestPki;
let foreign: TestPki;
const closers: (() => unknown)[] = [];
let dir = '';

beforeAll(async () => {
  pki = await createTestPki();
  foreign = await createTestPki({ trustDomain: 'other.example' });
  dir = mkdtempSync(join(tmpdir(), 'trellis-check-'));
});

afterAll(async () => {
  for (const close of closers) await close();
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe('trellis check against a control plane (VMs)', () => {
  let admin: string;
  let policyError: unknown = null;

  beforeAll(async () => {
    const control = await jsonServer({
      '/ready': () => [200, { ready: true, mode: 'zone', zone: 'east', trustDomain: 'cluster.local', epoch: 'e1', configVersion: 7, agents: 2, policy: { revision: 'sha256:ab', loadedAt: '2026-12-07T10:00:00.000Z', inForce: 3 } }],
      '/policy': () => [200, { revision: 'sha256:ab', loadedAt: '2026-12-07T10:00:00.000Z', error: policyError, policies: [{}, {}, {}] }],
      '/registry': () => [200, { endpoints: [{ instanceId: 'i-1', service: 'orders', namespace: 'shop', zone: 'east', address: '10.0.0.5', tunnelPort: 15008, healthy: true }, { instanceId: 'i-2', service: 'payments', namespace: 'shop', zone: 'east', address: '10.0.0.6', tunnelPort: 15008, healthy: false }] }],
    });
    closers.push(() => control.server.close());
    admin = control.url;
  });

  it('reports ready, valid policies, an unhealthy agent with its fix, and agents behind the config version', async () => {
    const current = await jsonServer({ '/config': () => [200, { instanceId: 'i-1', version: 7 }] });
    const behind = await jsonServer({ '/config': () => [200, { instanceId: 'i-2', version: 5 }] });
    closers.push(() => current.server.close(), () => behind.server.close());
    const findings = await controlFindings({ adminUrl: admin, agentAdminUrls: [current.url, behind.url, 'http://127.0.0.1:1'], now: new Date(), warnDays: 30, timeoutMs: 2_000 });
    expect(find(findings, 'control plane ready')).toMatchObject({ severity: 'ok', detail: expect.stringMatching(/mode zone, zone east, config version 7/) });
    expect(find(findings, 'policies valid')).toMatchObject({ severity: 'ok', detail: '3 in force, revision sha256:ab' });
    expect(find(findings, 'agents healthy')).toMatchObject({ severity: 'warn', detail: expect.stringContaining('shop/payments (i-2)'), fix: expect.any(String) });
    expect(find(findings, `agent ${current.url} config`).severity).toBe('ok');
    expect(find(findings, `agent ${behind.url} config`)).toMatchObject({ severity: 'warn', detail: 'version 5, the control plane is at 7' });
    expect(find(findings, 'agent http://127.0.0.1:1 config')).toMatchObject({ severity: 'fail', fix: expect.stringMatching(/--admin/) });
  });

  it('fails a rejected policy change, showing the issues and how to see them all', async () => {
    policyError = { message: 'invalid TrafficPermission', issues: ['allow-orders.yaml: spec.from[0].service: required'], at: '2026-12-07T11:00:00.000Z' };
    const findings = await controlFindings({ adminUrl: admin, agentAdminUrls: [], now: new Date(), warnDays: 30, timeoutMs: 2_000 });
    policyError = null;
    expect(find(findings, 'policies valid')).toMatchObject({ severity: 'fail', detail: expect.stringContaining('spec.from[0].service: required'), fix: expect.stringContaining('trellis policy check') });
  });

  it('verifies the control API certificate against the trust bundle and warns before it expires', async () => {
    const shortLived = await issueServingCertificate({ certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem }, ['127.0.0.1'], 10 * DAY);
    const tls: TlsServer = createTlsServer({ cert: shortLived.certChainPem, key: shortLived.keyPem }, (s) => s.end());
    await new Promise<void>((done) => tls.listen(0, '127.0.0.1', done));
    closers.push(() => tls.close());
    const apiAddress = `127.0.0.1:${(tls.address() as AddressInfo).port}`;
    const good = await controlFindings({ adminUrl: admin, apiAddress, trustBundlePem: pki.bundlePem, agentAdminUrls: [], now: new Date(), warnDays: 30, timeoutMs: 2_000 });
    expect(find(good, 'control API certificate trusted').severity).toBe('ok');
    expect(good.filter((f) => f.check === 'control API certificate').map((f) => f.severity)).toContain('warn');
    expect(good.filter((f) => f.check === 'trust bundle').every((f) => f.severity === 'ok')).toBe(true);
    const wrong = await controlFindings({ adminUrl: admin, apiAddress, trustBundlePem: foreign.bundlePem, agentAdminUrls: [], now: new Date(), warnDays: 30, timeoutMs: 2_000 });
    expect(find(wrong, 'control API certificate trusted')).toMatchObject({ severity: 'fail', fix: expect.stringContaining('mesh roots') });
    const later = await controlFindings({ adminUrl: admin, apiAddress, agentAdminUrls: [], now: new Date(Date.now() + 20 * DAY), warnDays: 30, timeoutMs: 2_000 });
    expect(find(later, 'control API certificate')).toMatchObject({ severity: 'fail', detail: expect.stringContaining('expired') });
  });

  it('fails an unreachable control plane, and the CLI exits 1 with the fix', async () => {
    const findings = await controlFindings({ adminUrl: 'http://127.0.0.1:1', agentAdminUrls: [], now: new Date(), warnDays: 30, timeoutMs: 1_000 });
    expect(findings).toEqual([expect.objectContaining({ check: 'control plane reachable', severity: 'fail', fix: expect.stringContaining('trellis control run') })]);
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
    const run = await cli(['check', '--control-admin', 'http://127.0.0.1:1', '--timeout', '1s']);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^× control plane reachable: no answer from http:\/\/127\.0\.0\.1:1/m);
    expect(run.stdout).toMatch(/^ {4}fix: start the control plane/m);
    expect(run.stdout).toMatch(/Status check results are × \(1 failed/);
    const fine = await cli(['check', '--control-admin', admin, '--output', 'json']);
    expect(fine.status).toBe(0);
    expect((JSON.parse(fine.stdout) as { findings: Finding[] }).findings.some((f) => f.check === 'agents healthy' && f.severity === 'warn')).toBe(true);
    const usage = await cli(['check']);
    expect(usage.status).toBe(2);
  });
});

describe('trellis check against a cluster', () => {
  let api: FakeKubeApi;

  function namespace(name: string, labels: Record<string, string>): Record<string, unknown> {
    return { kind: 'Namespace', apiVersion: 'v1', metadata: { name, uid: `uid-${name}`, labels: { 'kubernetes.io/metadata.name': name, 'trellis.dev/injection': 'enabled', ...labels } }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
  }

  function deployment(name: string, ready: number, args: string[] = []): Record<string, unknown> {
    return {
      kind: 'Deployment',
      apiVersion: 'apps/v1',
      metadata: { name, namespace: 'trellis-system', generation: 1 },
      spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name, image: 'trellis:dev', args }] } } },
      status: { observedGeneration: 1, replicas: 1, ...(ready > 0 ? { readyReplicas: ready, availableReplicas: ready } : { unavailableReplicas: 1 }) },
    };
  }

  beforeAll(async () => {
    const cert = await issueServingCertificate({ certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem }, ['127.0.0.1'], 3_600_000);
    api = await startFakeKubeApi(cert);
    closers.push(() => api.close());
    api.objects.set('/apis/apps/v1/namespaces/trellis-system/deployments/trellis-control', deployment('trellis-control', 1));
    api.objects.set('/apis/apps/v1/namespaces/trellis-system/deployments/trellis-injector', deployment('trellis-injector', 1, ['injector', 'run', '--capture-mode=init']));
    const b64 = Buffer.from(pki.bundlePem).toString('base64');
    api.webhookConfigurations.set('trellis-injector', { kind: 'MutatingWebhookConfiguration', apiVersion: 'admissionregistration.k8s.io/v1', metadata: { name: 'trellis-injector' }, webhooks: [{ name: 'namespace.injector.trellis.dev', clientConfig: { caBundle: b64, service: { name: 'trellis-injector', namespace: 'trellis-system' } } }, { name: 'object.injector.trellis.dev', clientConfig: { caBundle: b64, service: { name: 'trellis-injector', namespace: 'trellis-system' } } }] });
    api.namespaces.set('shop', namespace('shop', {}));
    api.namespaces.set('payments', namespace('payments', { 'pod-security.kubernetes.io/enforce': 'restricted' }));
    api.namespaces.set('ledger', namespace('ledger', { 'pod-security.kubernetes.io/enforce': 'restricted', 'trellis.dev/capture-mode': 'cni' }));
    api.namespaces.set('unmeshed', { kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'unmeshed', labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } });
  });

  it('finds the namespaces that cannot admit injected pods, with the fix, and the CNI agent missing where CNI capture is used', async () => {
    const findings = await kubernetesFindings({ kc: api.kubeConfig(), systemNamespace: 'trellis-system', trustBundlePem: pki.bundlePem, now: new Date(), warnDays: 30 });
    expect(find(findings, 'control plane ready').severity).toBe('ok');
    expect(find(findings, 'injector ready')).toMatchObject({ severity: 'ok', detail: expect.stringContaining('mesh-wide capture mode init') });
    expect(find(findings, 'injector webhook caBundle matches').severity).toBe('ok');
    expect(find(findings, 'namespace shop')).toMatchObject({ severity: 'ok', detail: expect.stringContaining('"privileged"') });
    expect(find(findings, 'namespace payments')).toMatchObject({ severity: 'fail', detail: expect.stringContaining('non-default capabilities (container "trellis-init"'), fix: expect.stringContaining('kubectl label namespace payments trellis.dev/capture-mode=cni') });
    expect(find(findings, 'namespace ledger')).toMatchObject({ severity: 'fail', detail: expect.stringContaining('trellis-cni node agent is not ready') });
    expect(findings.some((f) => f.check === 'namespace unmeshed')).toBe(false);
    expect(api.requests.at(-1)?.userAgent).toMatch(/^trellis-check\//);
  });

  it('passes once the CNI node agent runs everywhere, and fails a webhook caBundle of another CA', async () => {
    api.objects.set('/apis/apps/v1/namespaces/trellis-cni/daemonsets/trellis-cni', { kind: 'DaemonSet', apiVersion: 'apps/v1', metadata: { name: 'trellis-cni', namespace: 'trellis-cni' }, spec: {}, status: { desiredNumberScheduled: 2, currentNumberScheduled: 2, numberReady: 2, numberMisscheduled: 0 } });
    const findings = await kubernetesFindings({ kc: api.kubeConfig(), systemNamespace: 'trellis-system', trustBundlePem: foreign.bundlePem, now: new Date(), warnDays: 30 });
    expect(find(findings, 'namespace ledger')).toMatchObject({ severity: 'ok', detail: 'admits injected pods (Pod Security "restricted", capture mode cni)' });
    expect(find(findings, 'CNI node agent')).toMatchObject({ severity: 'ok', detail: '2/2 nodes ready' });
    expect(find(findings, 'injector webhook caBundle matches')).toMatchObject({ severity: 'fail', fix: expect.stringContaining('restart the injector') });
  });

  it('runs from the CLI with a kubeconfig', async () => {
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, api.kubeConfig().exportConfig());
    const run = await cli(['check', '--kubeconfig', kubeconfig]);
    expect(run.status, run.stderr).toBe(1);
    expect(run.stdout).toMatch(/^× namespace payments: Pod Security "restricted" with capture mode init/m);
    expect(run.stdout).toMatch(/^√ namespace ledger/m);
  });
});
