/**
 * What cannot run here (no Docker engine, so no kind and no image build), checked for what it says:
 * the kind cluster configs (two zones with distinct address ranges), the kustomize overlays, the
 * scripts (bash syntax, shellcheck, every file they use exists), and the Dockerfile (multi-stage, an LTS
 * Node, the native addon built when binding.gyp is present, non-root, exec-form entrypoint).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { requires } from '../helpers/requirements.js';
import { CA_FILES } from '../../ca/store.js';

const ROOT = resolve(import.meta.dirname, '../..');
const KIND = join(ROOT, 'deploy/kind');

interface KindCluster {
  kind: string;
  apiVersion: string;
  name: string;
  networking: { podSubnet: string; serviceSubnet: string };
  nodes: { role: string; labels?: Record<string, string> }[];
}

function cidrRange(cidr: string): [number, number] {
  const [address, prefix] = cidr.split('/') as [string, string];
  const base = address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(prefix));
  return [base, base + size - 1];
}

function overlaps(a: string, b: string): boolean {
  const [a0, a1] = cidrRange(a);
  const [b0, b1] = cidrRange(b);
  return a0 <= b1 && b0 <= a1;
}

describe('kind clusters', () => {
  const zones = ['east', 'west'];
  const clusters = zones.map((zone) => parse(readFileSync(join(KIND, `${zone}.yaml`), 'utf8')) as KindCluster);

  it('are kind v1alpha4 Cluster configs named after their zone, every node labelled with it', () => {
    clusters.forEach((cluster, i) => {
      const zone = zones[i] as string;
      expect(cluster).toMatchObject({ kind: 'Cluster', apiVersion: 'kind.x-k8s.io/v1alpha4', name: `trellis-${zone}` });
      expect(Object.keys(cluster).sort()).toEqual(['apiVersion', 'kind', 'name', 'networking', 'nodes']);
      expect(cluster.nodes.map((n) => n.role)).toEqual(['control-plane', 'worker']);
      for (const node of cluster.nodes) expect(node.labels).toEqual({ 'topology.kubernetes.io/zone': zone });
    });
  });

  it('use pod and service ranges that overlap nowhere, so addresses are unique across the mesh', () => {
    const ranges = clusters.flatMap((c) => [c.networking.podSubnet, c.networking.serviceSubnet]);
    for (const range of ranges) expect(range).toMatch(/^\d+\.\d+\.\d+\.\d+\/\d+$/);
    for (let i = 0; i < ranges.length; i++) for (let j = i + 1; j < ranges.length; j++) expect(overlaps(ranges[i]!, ranges[j]!), `${ranges[i]} vs ${ranges[j]}`).toBe(false);
  });

  it('have overlays that install deploy/kubernetes with their zone set', () => {
    const base = parse(readFileSync(join(ROOT, 'deploy/kubernetes/base/kustomization.yaml'), 'utf8')) as { resources: string[] };
    for (const resource of base.resources) expect(existsSync(join(ROOT, 'deploy/kubernetes/base', resource)), resource).toBe(true);
    for (const zone of zones) {
      const overlay = parse(readFileSync(join(KIND, 'overlays', zone, 'kustomization.yaml'), 'utf8')) as { resources: string[]; patches: { patch: string }[] };
      expect(overlay.resources).toEqual(['../../../kubernetes/overlays/zone']);
      expect(existsSync(join(KIND, 'overlays', zone, '../../../kubernetes/overlays/zone/kustomization.yaml'))).toBe(true);
      const patch = parse(overlay.patches[0]!.patch) as { kind: string; metadata: { name: string; namespace: string }; data: Record<string, string> };
      expect(patch).toMatchObject({ kind: 'ConfigMap', metadata: { name: 'trellis-mesh', namespace: 'trellis-system' }, data: { zone } });
    }
  });
});

describe('the kind scripts', () => {
  const scripts = ['up.sh', 'down.sh'].map((name) => join(KIND, name));

  it('are valid bash', () => {
    for (const script of scripts) execFileSync('bash', ['-n', script]);
  });

  const shellcheck = requires({ tools: ['shellcheck'] });
  it.skipIf(shellcheck.skip)('pass shellcheck', () => {
    execFileSync('shellcheck', scripts);
  });

  it('refer only to files that exist', () => {
    const text = readFileSync(join(KIND, 'up.sh'), 'utf8');
    const paths = [...text.matchAll(/\$ROOT\/([\w./-]+)/g)]
      .map((m) => m[1] as string)
      .filter((p) => !p.startsWith('.trellis-kind')) // the script's own work directory, made at run time
      .map((p) => p.replace(/\$zone/g, 'east'));
    expect(paths.length).toBeGreaterThan(5);
    for (const path of paths) expect(existsSync(join(ROOT, path)), path).toBe(true);
    for (const zone of ['east', 'west']) expect(existsSync(join(KIND, 'overlays', zone))).toBe(true);
  });

  it('use the CA commands and file names that trellis ca and the control plane use', () => {
    const text = readFileSync(join(KIND, 'up.sh'), 'utf8');
    expect(text).toMatch(/trellis ca init --dir \/work\/root --trust-domain/);
    expect(text).toMatch(/trellis ca intermediate --dir \/work\/root --out/);
    // The control plane's --ca-dir reads what `trellis ca init` writes (ca/store.ts CA_FILES): the Secret keeps the names.
    for (const name of Object.values(CA_FILES)) expect(text).toContain(`--from-file=${name}="$WORK/root/${name}"`);
    // Secrets carry the CA file names; ca.pem is only the ingress's trust bundle ConfigMap (public roots, no key).
    const secrets = text.split('create secret generic').slice(1).map((s) => s.split('| kubectl')[0] as string);
    expect(secrets.length).toBeGreaterThanOrEqual(4);
    for (const secret of secrets) expect(secret).not.toContain('--from-file=ca.pem=');
    expect(text).toContain('create configmap trellis-trust-bundle \\\n    --from-file=ca.pem="$WORK/root/bundle.pem"');
    expect(text).toContain('--from-file=ca.crt="$WORK/$zone-injector/ca.crt"');
  });
});

describe('the Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  // Instructions with continuation lines joined, comments dropped.
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages = instructions.filter((l) => l.startsWith('FROM '));
  const finalStage = instructions.slice(instructions.lastIndexOf(stages.at(-1)!));

  it('is multi-stage on the Node the project pins and tests on (an LTS, 24 or later), with no floating tags', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const version = /^ARG NODE_VERSION=(\d+\.\d+\.\d+)$/m.exec(text)?.[1];
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    expect(version).toBe(pkg.devDependencies.node);
    const nodeVersion = Number(version?.split('.')[0]);
    expect(nodeVersion % 2).toBe(0);
    expect(nodeVersion).toBeGreaterThanOrEqual(24);
    for (const stage of stages) {
      expect(stage).toMatch(/^FROM node:\$\{NODE_VERSION\}-[a-z]+-slim AS \w+$/);
      expect(stage).not.toMatch(/:latest/);
    }
  });

  it('builds the native addon when binding.gyp is present and fails the build if it did not compile', () => {
    expect(instructions.some((l) => /apt-get install .*python3 .*make .*g\+\+/.test(l))).toBe(true);
    const ci = instructions.findIndex((l) => /npm ci/.test(l));
    const check = instructions.findIndex((l) => /-f binding\.gyp/.test(l) && /build\/Release\/\*\.node/.test(l) && /exit 1/.test(l));
    expect(ci).toBeGreaterThan(0);
    expect(check).toBeGreaterThan(ci);
    // `npm ci` builds the addon only because the package's install script runs node-gyp.
    if (existsSync(join(ROOT, 'binding.gyp'))) {
      const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
      expect(pkg.scripts.install).toBe('node native/build-addons.js');
      expect(readFileSync(join(ROOT, 'native/build-addons.js'), 'utf8')).toMatch(/'rebuild'/);
    }
    expect(finalStage.some((l) => l === 'COPY --from=build /src/build/Release ./build/Release')).toBe(true);
  });

  it('ships only production dependencies and runs as a numeric non-root user with an exec-form entrypoint', () => {
    expect(instructions.some((l) => /npm prune --omit=dev/.test(l))).toBe(true);
    const users = finalStage.filter((l) => l.startsWith('USER '));
    expect(users.at(-1)).toMatch(/^USER [1-9]\d*:[1-9]\d*$/);
    expect(finalStage.find((l) => l.startsWith('ENTRYPOINT '))).toBe('ENTRYPOINT ["/usr/local/bin/trellis"]');
    expect(finalStage.some((l) => /apt-get install .*iptables/.test(l))).toBe(true);
  });

  it('keeps the build context small (dockerignore beside it, as BuildKit reads it)', () => {
    const ignore = readFileSync(join(ROOT, 'deploy/Dockerfile.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', 'dist', '.git']) expect(ignore).toContain(entry);
  });
});
