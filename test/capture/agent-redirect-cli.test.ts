/**
 * `trellis agent redirect ...` end to end through the CLI's main(): the dry run prints exactly the golden
 * rules, bad options are refused with every problem at once (exit 2), and install/show/uninstall work
 * against a real namespace through --netns.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliRun } from '../helpers/cli.js';
import { originalDstUnavailableReason } from '../../proxy/core/original-dst.js';
import { createNetnsLab, listLabNamespaces, netnsRequirements, type LabHost, type NetnsLab } from '../helpers/netns.js';

function trellis(...argv: string[]): Promise<CliRun> {
  return runCli(argv);
}

describe('trellis agent redirect (no root needed)', () => {
  it('lists redirect under `trellis agent --help`', async () => {
    const result = await trellis('agent', '--help');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/redirect\s+install, remove or show the iptables rules/);
  });

  it('prints exactly the golden rules with --dry-run', async () => {
    const v4 = await trellis('agent', 'redirect', 'install', '--dry-run', '--proxy-uid', '1337');
    expect(v4).toMatchObject({ code: 0, stderr: '' });
    expect(v4.stdout).toBe(readFileSync(new URL('./golden/vm-defaults.ipv4.rules', import.meta.url), 'utf8'));

    const both = await trellis(
      'agent', 'redirect', 'install', '--dry-run', '--ipv6', '--platform', 'pod',
      '--outbound-port', '16001', '--inbound-port', '16006', '--tunnel-port', '16008', '--admin-port', '16000',
      '--proxy-uid', '1337', '--proxy-gid', '1338',
    );
    const golden = (f: string): string => readFileSync(new URL(`./golden/pod-custom-ports.${f}.rules`, import.meta.url), 'utf8');
    expect(both.stdout).toBe(golden('ipv4') + golden('ipv6'));
  });

  it('resolves user and group names', async () => {
    const result = await trellis('agent', 'redirect', 'install', '--dry-run', '--proxy-uid', 'root', '--proxy-gid', 'root');
    expect(result.stdout).toContain('-m owner --uid-owner 0 -j RETURN');
    expect(result.stdout).toContain('-m owner --gid-owner 0 -j RETURN');
  });

  it('refuses bad options with every problem at once, exit 2', async () => {
    const result = await trellis(
      'agent', 'redirect', 'install', '--dry-run', '--proxy-uid', 'no-such-user-xyz', '--outbound-port', 'http',
      '--exclude-outbound-cidrs', '10.0.0.1/8', '--exclude-ssh',
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('proxy uid: no user named "no-such-user-xyz" on this system');
    expect(result.stderr).toContain('--outbound-port: "http" is not a port number');
    expect(result.stderr).toContain('--exclude-ssh: on a VM SSH is always excluded');
    const second = await trellis('agent', 'redirect', 'install', '--dry-run', '--exclude-outbound-cidrs', '10.0.0.1/8');
    expect(second.code).toBe(2);
    expect(second.stderr).toContain('did you mean 10.0.0.0/8?');
    expect(second.stderr).toContain('at least one is required');
  });

  it('refuses unknown actions and install-only flags elsewhere', async () => {
    expect((await trellis('agent', 'redirect', 'reinstall')).code).toBe(2);
    const misplaced = await trellis('agent', 'redirect', 'uninstall', '--proxy-uid', '1');
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain('--proxy-uid: only for install');
    expect((await trellis('agent', 'redirect', 'show', '--netns', '../etc')).code).toBe(2);
    expect((await trellis('agent', 'nonsense')).code).toBe(2);
  });
});

const need = netnsRequirements();

describe.skipIf(need.skip || originalDstUnavailableReason() !== null)('trellis agent redirect in a namespace (--netns)', () => {
  let lab: NetnsLab;
  let host: LabHost;
  beforeAll(async () => {
    lab = await createNetnsLab();
    host = await lab.addHost('cli');
  });
  afterAll(async () => {
    const runId = lab?.runId;
    await lab?.cleanup();
    if (runId !== undefined) expect(listLabNamespaces(runId)).toEqual([]);
  });

  it('installs, shows, reinstalls and uninstalls', async () => {
    const before = (await lab.exec(host, ['iptables-save', '-t', 'nat'])).stdout.replace(/^#.*\n/gm, '');
    const install = await trellis('agent', 'redirect', 'install', '--netns', host.netns, '--proxy-uid', '1337', '--exclude-outbound-cidrs', '169.254.169.254');
    expect(install).toMatchObject({ code: 0, stderr: '' });
    expect(install.stdout).toContain(`installed the Trellis redirect for IPv4 on network namespace ${host.netns}`);
    expect((await trellis('agent', 'redirect', 'install', '--netns', host.netns, '--proxy-uid', '1337')).code).toBe(0);

    const show = await trellis('agent', 'redirect', 'show', '--netns', host.netns);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('IPv4 (iptables): installed');
    expect(show.stdout.match(/-A OUTPUT -p tcp -j TRELLIS_OUTPUT/g)).toHaveLength(1);
    expect(show.stdout).not.toContain('169.254.169.254');

    const uninstall = await trellis('agent', 'redirect', 'uninstall', '--netns', host.netns);
    expect(uninstall.stdout).toContain('removed the Trellis redirect from IPv4');
    expect((await lab.exec(host, ['iptables-save', '-t', 'nat'])).stdout.replace(/^#.*\n/gm, '')).toBe(before);
    expect((await trellis('agent', 'redirect', 'uninstall', '--netns', host.netns)).stdout).toContain('nothing to remove');
  });
});
