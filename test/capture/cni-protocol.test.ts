/**
 * The plugin's edges without a network namespace: the CNI environment and configuration parsers against
 * malformed and hostile input, the pod annotation parser, and the conflist editor (no primary yet, a
 * single-plugin .conf, idempotent insertion, removal leaving other plugins alone, atomic replacement).
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError, parseCniArgs, parseCniEnvironment, parsePluginConfig, passThroughResult } from '../../capture/cni/protocol.js';
import { podRedirect } from '../../capture/cni/plugin.js';
import { insertIntoConflist, primaryConfFile, removeFromConflists } from '../../capture/cni/conflist.js';

const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc123', CNI_NETNS: '/var/run/netns/cni-1', CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1' };

function code(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof CniError ? err.code : -1;
  }
  return undefined;
}

describe('the CNI environment', () => {
  it('parses what containerd and CRI-O pass', () => {
    const env = parseCniEnvironment(ENV);
    expect(env).toMatchObject({ command: 'ADD', containerId: 'abc123', netns: '/var/run/netns/cni-1', ifName: 'eth0' });
    expect(env.args.get('K8S_POD_NAME')).toBe('web-1');
  });

  it.each([
    ['no command', { ...ENV, CNI_COMMAND: undefined }],
    ['unknown command', { ...ENV, CNI_COMMAND: 'REBOOT' }],
    ['relative netns on ADD', { ...ENV, CNI_NETNS: 'cni-1' }],
    ['container id with a path', { ...ENV, CNI_CONTAINERID: '../../etc' }],
    ['no interface', { ...ENV, CNI_IFNAME: '' }],
    ['args without =', { ...ENV, CNI_ARGS: 'K8S_POD_NAME' }],
    ['too many args', { ...ENV, CNI_ARGS: Array.from({ length: 65 }, (_, i) => `K${i}=v`).join(';') }],
  ])('refuses %s with code 4', (_, env) => {
    expect(code(() => parseCniEnvironment(env))).toBe(4);
  });

  it('lets DEL come without a namespace (the sandbox may be gone)', () => {
    expect(parseCniEnvironment({ ...ENV, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns).toBe('');
    expect(parseCniArgs('')).toEqual(new Map());
  });
});

describe('the network configuration', () => {
  const base = { cniVersion: '1.0.0', name: 'kindnet', type: 'trellis-cni', kubeconfig: '/etc/cni/net.d/trellis-cni.kubeconfig', prevResult: { cniVersion: '1.0.0', ips: [] } };

  it('parses ours and passes prevResult through in the configured version', () => {
    const config = parsePluginConfig(JSON.stringify({ ...base, exclude_namespaces: ['kube-system'], state_dir: '/run/t' }));
    expect(config).toMatchObject({ cniVersion: '1.0.0', excludeNamespaces: ['kube-system'], stateDir: '/run/t' });
    expect(passThroughResult(config)).toEqual({ cniVersion: '1.0.0', ips: [] });
  });

  it.each([
    ['not JSON', '{', 6],
    ['an array', '[]', 6],
    ['an unknown version', JSON.stringify({ ...base, cniVersion: '2.0.0' }), 1],
    ['no name', JSON.stringify({ ...base, name: '' }), 7],
    ['a relative kubeconfig', JSON.stringify({ ...base, kubeconfig: 'kc' }), 7],
    ['a prevResult that is not an object', JSON.stringify({ ...base, prevResult: [] }), 7],
    ['exclusions that are not names', JSON.stringify({ ...base, exclude_namespaces: [1] }), 7],
  ])('refuses %s', (_, text, expected) => {
    expect(code(() => parsePluginConfig(text))).toBe(expected);
  });
});

describe("the pod's redirect annotation", () => {
  const redirect = { platform: 'pod', proxyUids: [1337], proxyGids: [1337], outboundPort: 15001, inboundPort: 15006, tunnelPort: 15008 };
  const marks = (annotations: Record<string, string>) => ({ uid: 'u', annotations });

  it('is read only for pods marked for CNI capture', () => {
    expect(podRedirect(marks({}), 'pod a')).toBeNull();
    expect(podRedirect(marks({ 'trellis.dev/capture': 'init', 'trellis.dev/redirect': JSON.stringify(redirect) }), 'pod a')).toBeNull();
    expect(podRedirect(marks({ 'trellis.dev/capture': 'cni', 'trellis.dev/redirect': JSON.stringify(redirect) }), 'pod a')?.outboundPort).toBe(15001);
  });

  it.each([
    ['missing', {}],
    ['not JSON', { 'trellis.dev/redirect': '{' }],
    ['an array', { 'trellis.dev/redirect': '[]' }],
    ['the VM platform (SSH rules)', { 'trellis.dev/redirect': JSON.stringify({ ...redirect, platform: 'vm' }) }],
    ['without a proxy user (would capture the proxy itself)', { 'trellis.dev/redirect': JSON.stringify({ ...redirect, proxyUids: [], proxyGids: [] }) }],
    ['an exclusion that is not a range', { 'trellis.dev/redirect': JSON.stringify({ ...redirect, excludeOutboundCidrs: ['10.0.0.0/99'] }) }],
    ['huge', { 'trellis.dev/redirect': JSON.stringify({ ...redirect, pad: 'x'.repeat(20_000) }) }],
  ])('refuses a marked pod whose redirect is %s (code 100)', (_, extra) => {
    expect(code(() => podRedirect(marks({ 'trellis.dev/capture': 'cni', ...extra }), 'pod a'))).toBe(100);
  });
});

describe('the conflist', () => {
  const primary = { cniVersion: '1.0.0', name: 'k8s-pod-network', plugins: [{ type: 'calico' }, { type: 'bandwidth', capabilities: { bandwidth: true } }] };

  function confDir(files: Record<string, string>): string {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-conflist-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  }

  it('picks the first configuration file by name, as libcni does, and says when there is none yet', async () => {
    const dir = confDir({ '10-calico.conflist': JSON.stringify(primary), '05-cilium.conflist': JSON.stringify(primary), 'calico-kubeconfig': 'x', '99-loopback.conf': '{}' });
    expect(await primaryConfFile(dir)).toBe(join(dir, '05-cilium.conflist'));
    const empty = confDir({ 'README': 'x' });
    await expect(insertIntoConflist(empty, { type: 'trellis-cni' })).rejects.toThrow(/no CNI configuration .* yet: the primary CNI plugin .* writes it first/);
    rmSync(dir, { recursive: true });
    rmSync(empty, { recursive: true });
  });

  it('refuses a single-plugin .conf rather than rewriting the primary plugin', async () => {
    const dir = confDir({ '10-bridge.conf': JSON.stringify({ cniVersion: '0.4.0', name: 'bridge', type: 'bridge' }) });
    await expect(insertIntoConflist(dir, { type: 'trellis-cni' })).rejects.toThrow(/single-plugin \.conf/);
    rmSync(dir, { recursive: true });
  });

  it('inserts once (again replaces, never duplicates), and removal restores the other plugins exactly', async () => {
    const dir = confDir({ '10-calico.conflist': JSON.stringify(primary) });
    expect((await insertIntoConflist(dir, { type: 'trellis-cni', kubeconfig: '/a' })).changed).toBe(true);
    expect((await insertIntoConflist(dir, { type: 'trellis-cni', kubeconfig: '/a' })).changed).toBe(false);
    await insertIntoConflist(dir, { type: 'trellis-cni', kubeconfig: '/b' });
    const list = JSON.parse(readFileSync(join(dir, '10-calico.conflist'), 'utf8')) as { plugins: { type: string; kubeconfig?: string }[] };
    expect(list.plugins.map((p) => p.type)).toEqual(['calico', 'bandwidth', 'trellis-cni']);
    expect(list.plugins[2]?.kubeconfig).toBe('/b');
    expect(await removeFromConflists(dir)).toEqual([join(dir, '10-calico.conflist')]);
    expect(JSON.parse(readFileSync(join(dir, '10-calico.conflist'), 'utf8'))).toEqual(primary);
    expect(await removeFromConflists(dir)).toEqual([]);
    // No temp file left behind for the runtime to trip over.
    expect(readdirSync(dir)).toEqual(['10-calico.conflist']);
    rmSync(dir, { recursive: true });
  });
});
