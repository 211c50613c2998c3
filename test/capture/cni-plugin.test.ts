/**
 * The CNI plugin called as a container runtime calls it: `trellis cni install --runtime host` writes the
 * shim, the kubeconfig and the conflist entry into a temporary CNI directory; the test then executes the
 * installed shim with CNI_COMMAND, CNI_NETNS (a network namespace it created with `ip netns`),
 * CNI_IFNAME, CNI_CONTAINERID, CNI_ARGS (K8S_POD_*) and the network configuration with prevResult on
 * stdin, exactly as libcni builds it from the conflist. The pod's marks come from a fake API server on
 * loopback (real HTTPS, real JSON). Checked: the result passes prevResult through, the nat rules in the
 * namespace are the redirect's, real connections are redirected, CHECK notices missing rules, DEL removes
 * them (and is idempotent), errors are CNI error objects, and uninstall restores the conflist byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestPki } from '../helpers/pki.js';
import { issueServingCertificate } from '../../injector/serving-certificate-issuer.js';
import { startFakeKubeApi, type FakeKubeApi } from '../injector/fake-kube-api.js';
import { createNetnsLab, listLabNamespaces, netnsRequirements, type LabHost, type NetnsLab } from '../helpers/netns.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const MAIN = join(ROOT, 'dist/cli/main.js');
const SERVER = fileURLToPath(new URL('./fixtures/capture-server.mjs', import.meta.url));
const CLIENT = fileURLToPath(new URL('./fixtures/tcp-client.mjs', import.meta.url));
const PRIMARY = {
  cniVersion: '1.0.0',
  name: 'kindnet',
  plugins: [
    { type: 'ptp', ipMasq: false, ipam: { type: 'host-local', dataDir: '/run/cni-ipam-state', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.244.1.0/24' }]] }, mtu: 1500 },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};
const REDIRECT = { platform: 'pod', proxyUids: [1337], proxyGids: [1337], outboundPort: 15001, inboundPort: 15006, tunnelPort: 15008, excludeInboundPorts: ['15020'], excludeOutboundPorts: [], excludeInboundCidrs: [], excludeOutboundCidrs: [] };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function execFile(file: string, args: readonly string[], env: Record<string, string>, input: string): Promise<Run> {
  return new Promise((resolvePromise) => {
    const child = spawn(file, [...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

// Each case runs the plugin several times as a separate process: 90 s each on a loaded 2-core machine.
describe.skipIf(netnsRequirements(['nsenter']).skip)('the trellis-cni plugin, run as a container runtime runs it', { timeout: 90_000 }, () => {
  let lab: NetnsLab;
  let pod: LabHost;
  let plain: LabHost;
  let remote: LabHost;
  let api: FakeKubeApi;
  let dir = '';
  let binDir = '';
  let confDir = '';
  let stateDir = '';
  let runId = '';
  const primaryText = `${JSON.stringify(PRIMARY, null, 2)}\n`;

  function netnsPath(host: LabHost): string {
    return `/var/run/netns/${host.netns}`;
  }

  function setPod(name: string, uid: string, annotations: Record<string, string>): void {
    api.pods.set(`shop/${name}`, {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: { name, namespace: 'shop', uid, resourceVersion: '5150', creationTimestamp: '2026-12-07T10:00:00Z', annotations },
      spec: { nodeName: 'node-a', containers: [{ name: 'web', image: 'registry.example.com/web:1' }] },
      status: { phase: 'Pending' },
    });
  }

  /** The configuration libcni passes to the last plugin of the list: its entry, plus name, cniVersion and prevResult. */
  function stdinFor(host: LabHost | null, options: { withPrevResult?: boolean } = {}): string {
    const list = JSON.parse(readFileSync(join(confDir, '10-kindnet.conflist'), 'utf8')) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
    const entry = list.plugins.at(-1) ?? {};
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: host === null ? '' : netnsPath(host), mac: '0a:58:0a:f4:01:05' }],
      ips: [{ address: `${host?.ipv4 ?? '198.18.0.99'}/24`, gateway: '198.18.0.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: {},
    };
    return JSON.stringify({ ...entry, cniVersion: list.cniVersion, name: list.name, ...(options.withPrevResult === false ? {} : { prevResult }) });
  }

  function runtimeCall(command: string, host: LabHost | null, podName: string, uid: string, input: string): Promise<Run> {
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: `c0ffee${uid.replace(/-/g, '').slice(0, 20)}`,
      CNI_NETNS: host === null ? '' : netnsPath(host),
      CNI_IFNAME: 'eth0',
      CNI_PATH: binDir,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=${podName};K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=${uid}`,
    };
    return execFile(join(binDir, 'trellis-cni'), [], env, input);
  }

  async function natRules(host: LabHost): Promise<string> {
    return (await lab.exec(host, ['iptables-save', '-t', 'nat'])).stdout;
  }

  async function connect(from: LabHost, host: string, port: number): Promise<string> {
    const result = await lab.exec(from, ['node', CLIENT, host, String(port)], { uid: 4000, allowFailure: true });
    const line = result.stdout.trim();
    return line.startsWith('{') ? (JSON.parse(line) as { label: string }).label : line;
  }

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
    const pki = await createTestPki();
    const cert = await issueServingCertificate({ certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem }, ['127.0.0.1'], 3_600_000);
    api = await startFakeKubeApi(cert);
    dir = mkdtempSync(join(tmpdir(), 'trellis-cni-'));
    binDir = join(dir, 'opt-cni-bin');
    confDir = join(dir, 'etc-cni-net.d');
    stateDir = join(dir, 'run-trellis-cni');
    mkdirSync(binDir);
    mkdirSync(confDir);
    writeFileSync(join(confDir, '10-kindnet.conflist'), primaryText);
    writeFileSync(join(dir, 'kubeconfig'), api.kubeConfig().exportConfig());
    lab = await createNetnsLab();
    runId = lab.runId;
    pod = await lab.addHost('pod');
    plain = await lab.addHost('plain');
    remote = await lab.addHost('remote');
    const servers = [
      lab.spawn(pod, ['node', SERVER, '--label', 'outbound-capture', '--port', '15001']),
      lab.spawn(pod, ['node', SERVER, '--label', 'inbound-capture', '--port', '15006']),
      lab.spawn(pod, ['node', SERVER, '--label', 'app', '--port', '9090']),
      lab.spawn(remote, ['node', SERVER, '--label', 'remote', '--port', '8080']),
    ];
    await Promise.all(servers.map((s) => s.waitForOutput(/listening/)));
  }, 60_000);

  afterAll(async () => {
    await lab?.cleanup();
    await api?.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    if (runId !== '') expect(listLabNamespaces(runId)).toEqual([]);
  });

  const install = (): Promise<Run> =>
    execFile(process.execPath, [MAIN, 'cni', 'install', '--runtime', 'host', '--cni-bin-dir', binDir, '--cni-conf-dir', confDir, '--host-cni-conf-dir', confDir, '--state-dir', stateDir, '--plugin-kubeconfig', join(dir, 'kubeconfig')], { PATH: process.env.PATH ?? '' }, '');

  it('install appends the entry last in the primary conflist, writes the shim and a 0600 kubeconfig, and is idempotent', async () => {
    const first = await install();
    expect(first.code, first.stderr).toBe(0);
    const list = JSON.parse(readFileSync(join(confDir, '10-kindnet.conflist'), 'utf8')) as { plugins: { type: string }[] };
    expect(list.plugins.map((p) => p.type)).toEqual(['ptp', 'portmap', 'trellis-cni']);
    expect(list.plugins[2]).toEqual({ type: 'trellis-cni', kubeconfig: join(confDir, 'trellis-cni.kubeconfig'), state_dir: stateDir, exclude_namespaces: ['kube-system', 'trellis-system'] });
    expect(readFileSync(join(binDir, 'trellis-cni'), 'utf8')).toContain(`cni plugin`);
    const { statSync } = await import('node:fs');
    expect(statSync(join(confDir, 'trellis-cni.kubeconfig')).mode & 0o777).toBe(0o600);
    expect(statSync(join(binDir, 'trellis-cni')).mode & 0o777).toBe(0o755);
    const again = await install();
    expect(again.stdout).toMatch(/already installed/);
    expect(JSON.parse(readFileSync(join(confDir, '10-kindnet.conflist'), 'utf8')).plugins).toHaveLength(3);
  });

  it('VERSION answers the versions it speaks', async () => {
    const run = await runtimeCall('VERSION', null, 'x', 'u', '{"cniVersion":"1.0.0"}');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  it('ADD for a marked pod installs the redirect in its namespace, passes prevResult through, and records the pod', async () => {
    const uid = '7d5b2f3c-1a4e-4c6b-9f0d-2e8a1b3c4d5e';
    setPod('web-1', uid, { 'trellis.dev/capture': 'cni', 'trellis.dev/redirect': JSON.stringify(REDIRECT) });
    const input = stdinFor(pod);
    const run = await runtimeCall('ADD', pod, 'web-1', uid, input);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const prev = (JSON.parse(input) as { prevResult: Record<string, unknown> }).prevResult;
    expect(JSON.parse(run.stdout)).toEqual({ ...prev, cniVersion: '1.0.0' });
    const rules = await natRules(pod);
    expect(rules).toContain('-A OUTPUT -p tcp -j TRELLIS_OUTPUT');
    expect(rules).toContain('-A TRELLIS_REDIRECT -p tcp -j REDIRECT --to-ports 15001');
    expect(rules).toContain('-A TRELLIS_INBOUND -p tcp -m tcp --dport 15020 -j RETURN');
    expect(JSON.parse(readFileSync(join(stateDir, `${uid}.json`), 'utf8'))).toMatchObject({ uid, namespace: 'shop', name: 'web-1', netns: netnsPath(pod) });
    // The pod was read as trellis-cni.
    expect(api.requests.filter((r) => r.path === '/api/v1/namespaces/shop/pods/web-1').at(-1)?.userAgent).toMatch(/^trellis-cni\//);
  });

  it('redirects real traffic: the app calling out reaches the outbound port, a caller reaches the inbound port', async () => {
    expect(await connect(pod, remote.ipv4, 8080)).toBe('outbound-capture');
    expect(await connect(remote, pod.ipv4, 9090)).toBe('inbound-capture');
    // The proxy's own uid is not captured.
    const own = await lab.exec(pod, ['node', CLIENT, remote.ipv4, '8080'], { uid: 1337, allowFailure: true });
    expect(JSON.parse(own.stdout.trim()).label).toBe('remote');
  });

  it("the sidecar's readiness check (no privilege, as the proxy uid) sees the plugin's redirect, and says why where there is none", async () => {
    const script = `import(${JSON.stringify(join(ROOT, 'dist/agent/redirect-check.js'))}).then(async (m) => { const c = new m.RedirectCheck({ address: process.argv[1], timeoutMs: 3000 }); const ok = await c.probe(); if (ok) c.start(); await new Promise((r) => setTimeout(r, 50)); c.stop(); console.log(JSON.stringify({ ok, reason: ok ? c.reason() : (c.reason() ?? '') })); })`;
    const meshed = await lab.exec(pod, ['node', '-e', script, pod.ipv4], { uid: 1337 });
    expect(JSON.parse(meshed.stdout)).toEqual({ ok: true, reason: null });
    const bare = await lab.exec(plain, ['node', '-e', script, plain.ipv4], { uid: 1337 });
    const answer = JSON.parse(bare.stdout) as { ok: boolean; reason: string };
    expect(answer.ok).toBe(false);
    expect(answer.reason).toMatch(/the traffic redirect is not in place in this pod \(a connection to 198\.18\.0\.\d+:15099 was refused, not redirected to the inbound capture port\): the Trellis CNI plugin has not set up/);
  });

  it('CHECK passes with the rules in place and fails, as a CNI error, once they are gone', async () => {
    const uid = '7d5b2f3c-1a4e-4c6b-9f0d-2e8a1b3c4d5e';
    const ok = await runtimeCall('CHECK', pod, 'web-1', uid, stdinFor(pod));
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toBe('');
    await lab.exec(pod, ['iptables', '-t', 'nat', '-F', 'TRELLIS_REDIRECT']);
    const bad = await runtimeCall('CHECK', pod, 'web-1', uid, stdinFor(pod));
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 102, msg: expect.stringMatching(/IPv4 redirect .* is not the one the pod needs/) });
    // ADD again puts it right (idempotent install).
    expect((await runtimeCall('ADD', pod, 'web-1', uid, stdinFor(pod))).code).toBe(0);
    expect((await runtimeCall('CHECK', pod, 'web-1', uid, stdinFor(pod))).code).toBe(0);
  });

  it('passes an unmarked pod, an excluded namespace and a non-Kubernetes call through without touching anything', async () => {
    setPod('plain-1', '11111111-2222-4333-8444-555555555555', { 'trellis.dev/inject': 'false' });
    const input = stdinFor(plain);
    const run = await runtimeCall('ADD', plain, 'plain-1', '11111111-2222-4333-8444-555555555555', input);
    expect(run.code, run.stdout).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ ...(JSON.parse(input) as { prevResult: object }).prevResult, cniVersion: '1.0.0' });
    expect(await natRules(plain)).not.toContain('TRELLIS');
    const reads = api.requests.length;
    const system = await execFile(join(binDir, 'trellis-cni'), [], { PATH: process.env.PATH ?? '', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: netnsPath(plain), CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1' }, input);
    expect(system.code).toBe(0);
    expect(api.requests.length).toBe(reads);
  });

  it('answers bad requests with CNI error objects and changes nothing', async () => {
    const uid = '22222222-3333-4444-8555-666666666666';
    setPod('broken-1', uid, { 'trellis.dev/capture': 'cni', 'trellis.dev/redirect': JSON.stringify({ ...REDIRECT, outboundPort: 99999 }) });
    const broken = await runtimeCall('ADD', plain, 'broken-1', uid, stdinFor(plain));
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 100, msg: expect.stringMatching(/pod shop\/broken-1: trellis.dev\/redirect is invalid/) });
    setPod('vm-1', uid, { 'trellis.dev/capture': 'cni', 'trellis.dev/redirect': JSON.stringify({ ...REDIRECT, platform: 'vm' }) });
    expect(JSON.parse((await runtimeCall('ADD', plain, 'vm-1', uid, stdinFor(plain))).stdout).code).toBe(100);
    expect(await natRules(plain)).not.toContain('TRELLIS');
    const noPrev = await runtimeCall('ADD', plain, 'plain-1', uid, stdinFor(plain, { withPrevResult: false }));
    expect(JSON.parse(noPrev.stdout)).toMatchObject({ code: 7, msg: expect.stringMatching(/chained plugin/) });
    const badVersion = await runtimeCall('ADD', plain, 'plain-1', uid, JSON.stringify({ cniVersion: '9.9.9', name: 'kindnet', type: 'trellis-cni' }));
    expect(JSON.parse(badVersion.stdout)).toMatchObject({ code: 1 });
    const notJson = await runtimeCall('ADD', plain, 'plain-1', uid, '{"cniVersion":');
    expect(JSON.parse(notJson.stdout)).toMatchObject({ code: 6 });
    const noCommand = await execFile(join(binDir, 'trellis-cni'), [], { PATH: process.env.PATH ?? '' }, '');
    expect(JSON.parse(noCommand.stdout)).toMatchObject({ code: 4, msg: expect.stringMatching(/CNI_COMMAND is not set/) });
    api.failNext(10);
    const down = await runtimeCall('ADD', plain, 'plain-1', uid, stdinFor(plain));
    api.failNext(0);
    expect(JSON.parse(down.stdout)).toMatchObject({ code: 11, msg: expect.stringMatching(/cannot read pod shop\/plain-1/) });
  });

  it('DEL removes the rules and the record, and succeeds again when everything is already gone', async () => {
    const uid = '7d5b2f3c-1a4e-4c6b-9f0d-2e8a1b3c4d5e';
    const run = await runtimeCall('DEL', pod, 'web-1', uid, stdinFor(pod));
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toBe('');
    expect(await natRules(pod)).not.toContain('TRELLIS');
    expect(existsSync(join(stateDir, `${uid}.json`))).toBe(false);
    expect(await connect(pod, remote.ipv4, 8080)).toBe('remote');
    expect((await runtimeCall('DEL', pod, 'web-1', uid, stdinFor(pod))).code).toBe(0);
    expect((await runtimeCall('DEL', null, 'web-1', uid, stdinFor(null))).code).toBe(0);
  });

  it('uninstall takes out our entry, the shim and the kubeconfig, leaving the conflist as it was', async () => {
    const run = await execFile(process.execPath, [MAIN, 'cni', 'uninstall', '--cni-bin-dir', binDir, '--cni-conf-dir', confDir], { PATH: process.env.PATH ?? '' }, '');
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(confDir, '10-kindnet.conflist'), 'utf8'))).toEqual(PRIMARY);
    expect(existsSync(join(binDir, 'trellis-cni'))).toBe(false);
    expect(existsSync(join(confDir, 'trellis-cni.kubeconfig'))).toBe(false);
  });
});
