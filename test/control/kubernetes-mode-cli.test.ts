/**
 * `trellis control run --mode kubernetes`: how the API is chosen (--kubeconfig, in-cluster from the
 * pod's environment, $KUBECONFIG), the refusals (exit code 2, every problem listed at once, nothing
 * written), the help text, and the built binary serving in Kubernetes mode against a loopback API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { runCli } from '../helpers/cli.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';
import { removeDir } from './support.js';

const MAIN = resolve(import.meta.dirname, '../../dist/cli/main.js');

const run = runCli;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-k8s-cli-'));
});
afterAll(() => removeDir(dir));

describe('trellis control run --mode', () => {
  it('documents the mode and its flags in --help', async () => {
    const help = await run(['control', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--mode MODE', '--kubeconfig FILE', '--kube-context NAME', 'universal | kubernetes']) expect(help.stdout).toContain(flag);
  });

  it('refuses an unknown mode, --policy in kubernetes mode, and Kubernetes flags in universal mode, all at once', async () => {
    const bad = await run(['control', 'run', '--data-dir', join(dir, 'a'), '--mode', 'swarm', '--kubeconfig', '/tmp/kc', '--zone', 'East']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--mode: "swarm" is not universal, kubernetes or global');
    expect(bad.stderr).toContain('--kubeconfig and --kube-context need --mode kubernetes');
    expect(bad.stderr).toContain('--zone: "East" must be a DNS label');

    const both = await run(['control', 'run', '--data-dir', join(dir, 'a'), '--mode', 'kubernetes', '--kubeconfig', '/tmp/kc', '--policy', '/tmp/p']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('policy comes from TrafficPermission resources');

    const stray = await run(['control', 'run', '--data-dir', join(dir, 'a'), '--kube-context', 'east']);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('--kubeconfig and --kube-context need --mode kubernetes');
    expect(existsSync(join(dir, 'a'))).toBe(false);
  });

  it('says how to reach the API when not in a pod and given no kubeconfig', async () => {
    const r = await run(['control', 'run', '--data-dir', join(dir, 'b'), '--mode', 'kubernetes']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('run in a pod (KUBERNETES_SERVICE_HOST/PORT set), or pass --kubeconfig FILE');
    const several = await run(['control', 'run', '--data-dir', join(dir, 'b'), '--mode', 'kubernetes'], { KUBECONFIG: '/a/config:/b/config' });
    expect(several.code).toBe(2);
    expect(several.stderr).toContain('$KUBECONFIG lists several files');
  });

  it('uses the pod\'s environment in a pod, $KUBECONFIG outside one, and refuses either when unusable, before anything is written', async () => {
    const inPod = await run(['control', 'run', '--data-dir', join(dir, 'c'), '--mode', 'kubernetes'], { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' });
    expect(inPod.code).toBe(2);
    expect(inPod.stderr).toContain('no service-account token at /var/run/secrets/kubernetes.io/serviceaccount/token');

    const fromEnv = await run(['control', 'run', '--data-dir', join(dir, 'c'), '--mode', 'kubernetes'], { KUBECONFIG: '/nonexistent/kubeconfig' });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain('$KUBECONFIG /nonexistent/kubeconfig: ');

    const flag = await run(['control', 'run', '--data-dir', join(dir, 'c'), '--mode', 'kubernetes', '--kubeconfig', '/nonexistent/other'], { KUBECONFIG: '/nonexistent/kubeconfig' });
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('/nonexistent/other');
    expect(existsSync(join(dir, 'c'))).toBe(false);
  });
});

describe('trellis control run --mode kubernetes, the built binary', () => {
  let api: FakeKubeApi;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    api = await startFakeKubeApi();
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    api.apply(PATHS.slices, fixture('k8s-endpointslice-payments.json'));
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
  });
  afterAll(async () => {
    if (child !== undefined && child.exitCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    await api.close();
  });

  it('serves with the registry and policy from the API, reached through $KUBECONFIG and --kube-context, and stops on SIGTERM', async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npx tsc -p tsconfig.build.json\` first`);
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: control\n  user:\n    token: t\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: control\ncurrent-context: missing\n`,
    );
    child = spawn(process.execPath, [MAIN, 'control', 'run', '--mode', 'kubernetes', '--kube-context', 'fake', '--data-dir', join(dir, 'data'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--log-level', 'warn'], {
      env: { PATH: process.env.PATH ?? '', KUBECONFIG: kubeconfig },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const first = await Promise.race([
      once(lines, 'line').then(([line]) => line as string),
      once(child, 'exit').then(() => Promise.reject(new Error(`exited before ready: ${stderr}`))),
    ]);
    const ready = JSON.parse(first) as { event: string; admin: string };
    expect(ready.event).toBe('ready');
    const status = (await (await fetch(`${ready.admin}/ready`)).json()) as { mode: string; policy: { inForce: number } };
    expect(status).toMatchObject({ mode: 'kubernetes', policy: { inForce: 1 } });
    const registry = (await (await fetch(`${ready.admin}/registry`)).json()) as { endpoints: { address: string; service: string }[] };
    expect(registry.endpoints.map((e) => `${e.service}@${e.address}`)).toEqual(['payments@10.244.1.17']);
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  });
});
