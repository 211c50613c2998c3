/**
 * Installing, reinstalling and uninstalling the redirect with real iptables, inside lab namespaces, on both
 * the nf_tables and the legacy backend: the rules read back exactly as generated, twice is the same as once,
 * uninstall restores the exact previous ruleset (an operator's own rules untouched), and a failed IPv6 step
 * puts IPv4 back as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsRunner, type CommandRunner } from '../../capture/command-runner.js';
import { detectBackend, type BackendKind } from '../../capture/backend.js';
import { createRedirectInstaller, formatStatus } from '../../capture/installer.js';
import { parseNatState, sameRuleSet } from '../../capture/nat-state.js';
import { validateRedirectOptions } from '../../capture/options.js';
import { buildNatRules } from '../../capture/rules.js';
import { createNetnsLab, listLabNamespaces, netnsRequirements, type LabHost, type NetnsLab } from '../helpers/netns.js';

const need = netnsRequirements();

/** The nat table without comments and packet counters, which change between two reads. */
function natRules(save: string): string {
  return save
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, ''))
    .join('\n');
}

describe.skipIf(need.skip)('redirect install/uninstall with real iptables in a namespace', () => {
  let lab: NetnsLab;
  let runId = '';

  beforeAll(async () => {
    lab = await createNetnsLab({ ipv6: true });
    runId = lab.runId;
  });
  afterAll(async () => {
    await lab?.cleanup();
    expect(listLabNamespaces(runId)).toEqual([]);
  });

  const config = validateRedirectOptions({ proxyUids: [1337], proxyGids: [1337], excludeOutboundCidrs: ['169.254.169.254/32'], excludeInboundPorts: ['9000-9100'] });

  for (const backend of ['nft', 'legacy'] as const satisfies readonly BackendKind[]) {
    describe(`${backend} backend`, () => {
      let host: LabHost;
      let runner: CommandRunner;
      const save = async (family: 4 | 6 = 4): Promise<string> => {
        const result = await runner.run(family === 4 ? `iptables-${backend}-save` : `ip6tables-${backend}-save`, ['-t', 'nat']);
        expect(result.code, result.stderr).toBe(0);
        return result.stdout;
      };

      beforeAll(async () => {
        host = await lab.addHost(backend);
        runner = netnsRunner(host.netns);
        // An operator's own rules, which uninstall must leave exactly as they were.
        await lab.exec(host, [`iptables-${backend}`, '-t', 'nat', '-N', 'OPERATOR_OWN']);
        await lab.exec(host, [`iptables-${backend}`, '-t', 'nat', '-A', 'OPERATOR_OWN', '-d', '203.0.113.0/24', '-j', 'RETURN']);
        await lab.exec(host, [`iptables-${backend}`, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'OPERATOR_OWN']);
      });

      it('installs exactly the generated rules, twice without duplicates, and uninstall restores the previous table', async () => {
        const before = natRules(await save());
        const installer = createRedirectInstaller({ runner, backend });

        const first = await installer.install(config);
        expect(first).toMatchObject({ backend, families: [4], unchanged: [] });
        const installed = parseNatState(await save());
        expect(sameRuleSet(installed, buildNatRules(config, 4))).toBe(true);
        expect(installed.jumps).toEqual(['-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -j TRELLIS_INBOUND', '-A OUTPUT -p tcp -j TRELLIS_OUTPUT']);
        expect(natRules(await save())).toContain('-A OUTPUT -p tcp -j OPERATOR_OWN');

        const second = await installer.install(config);
        expect(second.unchanged).toEqual([4]);
        const again = await save();
        expect(natRules(again)).toBe(natRules(await save()));
        expect(again.split('\n').filter((l) => l === '-A OUTPUT -p tcp -j TRELLIS_OUTPUT')).toHaveLength(1);
        expect(sameRuleSet(parseNatState(again), buildNatRules(config, 4))).toBe(true);

        const removed = await installer.uninstall();
        expect(removed.removed).toEqual([4]);
        expect(natRules(await save())).toBe(before);
        expect((await installer.uninstall()).removed).toEqual([]);
      });

      it('replaces the rules when the options change', async () => {
        const installer = createRedirectInstaller({ runner, backend });
        await installer.install(config);
        const changed = validateRedirectOptions({ proxyUids: [2000], outboundPort: 16001 });
        await installer.install(changed);
        const state = parseNatState(await save());
        expect(sameRuleSet(state, buildNatRules(changed, 4))).toBe(true);
        expect(state.rules.join('\n')).not.toContain('1337');
        await installer.uninstall();
        expect(parseNatState(await save()).installed).toBe(false);
      });

      it('removes a stale chain of ours that the current version no longer generates', async () => {
        await lab.exec(host, [`iptables-${backend}`, '-t', 'nat', '-N', 'TRELLIS_OLD']);
        await lab.exec(host, [`iptables-${backend}`, '-t', 'nat', '-A', 'TRELLIS_OLD', '-j', 'RETURN']);
        await lab.exec(host, [`iptables-${backend}`, '-t', 'nat', '-A', 'PREROUTING', '-j', 'TRELLIS_OLD']);
        const installer = createRedirectInstaller({ runner, backend });
        await installer.install(config);
        const state = parseNatState(await save());
        expect(state.chains).not.toContain('TRELLIS_OLD');
        expect(sameRuleSet(state, buildNatRules(config, 4))).toBe(true);
        await installer.uninstall();
      });

      it('installs and removes the IPv6 rules with ip6tables', async (ctx) => {
        if (!lab.ipv6) ctx.skip(`IPv6 unavailable: ${lab.ipv6Problem ?? ''}`);
        const before6 = natRules(await save(6));
        const installer = createRedirectInstaller({ runner, backend });
        const v6config = validateRedirectOptions({ proxyUids: [1337], excludeOutboundCidrs: ['fd00:abcd::/32', '10.0.0.0/8'], ipv6: true });
        expect((await installer.install(v6config)).families).toEqual([4, 6]);
        expect(sameRuleSet(parseNatState(await save(6)), buildNatRules(v6config, 6))).toBe(true);
        expect(sameRuleSet(parseNatState(await save(4)), buildNatRules(v6config, 4))).toBe(true);
        const shown = formatStatus(await installer.status());
        expect(shown).toContain('IPv4 (iptables): installed');
        expect(shown).toContain('IPv6 (ip6tables): installed');
        expect(shown).toContain('-A TRELLIS_OUTPUT -d fd00:abcd::/32 -j RETURN');
        expect((await installer.uninstall()).removed).toEqual([4, 6]);
        expect(natRules(await save(6))).toBe(before6);
        expect(formatStatus(await installer.status())).toContain('IPv6 (ip6tables): not installed');
      });

      it('puts IPv4 back as it was when the IPv6 step fails', async () => {
        const installer = createRedirectInstaller({ runner, backend });
        const previous = validateRedirectOptions({ proxyUids: [4242] });
        await installer.install(previous);
        const before = natRules(await save());
        const failingIpv6: CommandRunner = {
          where: runner.where,
          run: (file, args, input) =>
            file.startsWith('ip6tables') && file.endsWith('-restore') ? Promise.resolve({ code: 2, stdout: '', stderr: 'ip6tables-restore: simulated failure' }) : runner.run(file, args, input),
        };
        const failing = createRedirectInstaller({ runner: failingIpv6, backend });
        await expect(failing.install(validateRedirectOptions({ proxyUids: [1337], ipv6: true }))).rejects.toMatchObject({ code: 'TRELLIS_REDIRECT_APPLY_FAILED' });
        expect(natRules(await save())).toBe(before);
        await installer.uninstall();
      });
    });
  }

  describe('backend detection', () => {
    it('uses what `iptables --version` names when no backend holds rules', async () => {
      const host = await lab.addHost('detect-fresh');
      const version = await lab.exec(host, ['iptables', '--version']);
      const expected = /nf_tables/.test(version.stdout) ? 'nft' : 'legacy';
      expect((await detectBackend(netnsRunner(host.netns))).kind).toBe(expected);
    });

    it('follows the backend that actually holds rules when the default one is empty', async () => {
      const host = await lab.addHost('detect-used');
      const version = await lab.exec(host, ['iptables', '--version']);
      const other = /nf_tables/.test(version.stdout) ? 'legacy' : 'nft';
      await lab.exec(host, [`iptables-${other}`, '-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'DROP']);
      const detected = await detectBackend(netnsRunner(host.netns));
      expect(detected.kind).toBe(other);
      expect(detected.reason).toContain(`only the ${other} backend holds rules`);
    });
  });
});
