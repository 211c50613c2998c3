/**
 * Golden files of the generated nat rules for representative option sets, IPv4 and IPv6.
 * A change to the rules must show up as a reviewed diff of test/capture/golden/*.rules:
 * regenerate with `UPDATE_GOLDEN=1 npx vitest run test/capture/redirect-rules.test.ts` and read the diff.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { validateRedirectOptions, type RedirectOptionsInput } from '../../capture/options.js';
import { buildNatRules, renderRuleSet, type AddressFamily } from '../../capture/rules.js';

const GOLDEN_DIR = new URL('./golden/', import.meta.url);

const cases: ReadonlyArray<{ name: string; options: RedirectOptionsInput; families: readonly AddressFamily[] }> = [
  { name: 'vm-defaults', options: { proxyUids: [1337] }, families: [4] },
  {
    name: 'vm-exclusions',
    options: {
      proxyUids: [1337],
      proxyGids: [1337],
      excludeInboundPorts: [8081, '9000-9100'],
      excludeOutboundPorts: ['3306'],
      excludeInboundCidrs: ['10.0.0.0/8', 'fd00::/8'],
      excludeOutboundCidrs: ['169.254.169.254', '2001:db8:0:0::/64'],
      ipv6: true,
    },
    families: [4, 6],
  },
  {
    name: 'pod-custom-ports',
    options: { platform: 'pod', outboundPort: 16001, inboundPort: 16006, tunnelPort: 16008, adminPort: 16000, proxyUids: [1337], proxyGids: [1338], ipv6: true },
    families: [4, 6],
  },
  { name: 'pod-with-ssh', options: { platform: 'pod', excludeSsh: true, proxyGids: [2000] }, families: [4] },
];

describe('generated redirect rules match the golden files', () => {
  for (const { name, options, families } of cases) {
    for (const family of families) {
      it(`${name} IPv${family}`, () => {
        const text = renderRuleSet(buildNatRules(validateRedirectOptions(options), family), family);
        const file = new URL(`${name}.ipv${family}.rules`, GOLDEN_DIR);
        if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
        expect(text).toBe(readFileSync(file, 'utf8'));
      });
    }
  }
});

describe('rule invariants', () => {
  const config = validateRedirectOptions({ proxyUids: [1337], proxyGids: [1337], excludeOutboundPorts: [5432], ipv6: true });

  it('returns for the tunnel and admin ports before anything can capture them, in both directions', () => {
    for (const family of [4, 6] as const) {
      const { rules } = buildNatRules(config, family);
      const inbound = rules.filter((r) => r.startsWith('-A TRELLIS_INBOUND '));
      const output = rules.filter((r) => r.startsWith('-A TRELLIS_OUTPUT '));
      for (const chain of [inbound, output]) {
        expect(chain[0]).toContain('--dport 15008 -j RETURN');
        expect(chain[1]).toContain('--dport 15000 -j RETURN');
        expect(chain[2]).toContain('--dport 22 -j RETURN');
      }
      expect(inbound.at(-1)).toBe('-A TRELLIS_INBOUND -p tcp -j TRELLIS_IN_REDIRECT');
      expect(output.at(-1)).toBe('-A TRELLIS_OUTPUT -j TRELLIS_REDIRECT');
    }
  });

  it("excludes the proxy's own traffic before the catch-all redirect, and never redirects IPv4 rules with IPv6 addresses", () => {
    const v4 = buildNatRules(config, 4).rules;
    const v6 = buildNatRules(config, 6).rules;
    const uidReturn = v4.indexOf('-A TRELLIS_OUTPUT -m owner --uid-owner 1337 -j RETURN');
    const gidReturn = v4.indexOf('-A TRELLIS_OUTPUT -m owner --gid-owner 1337 -j RETURN');
    const catchAll = v4.indexOf('-A TRELLIS_OUTPUT -j TRELLIS_REDIRECT');
    expect(uidReturn).toBeGreaterThan(-1);
    expect(gidReturn).toBeGreaterThan(uidReturn);
    expect(catchAll).toBeGreaterThan(gidReturn);
    expect(v4.join('\n')).not.toMatch(/::/);
    expect(v6.join('\n')).not.toMatch(/127\.0\.0/);
  });

  it('refuses options that would loop or lock the operator out, listing every problem at once', () => {
    let caught: unknown;
    try {
      validateRedirectOptions({ outboundPort: 15006, excludeSsh: false, excludeOutboundCidrs: ['10.1.2.3/8', 'fd00::/8', 'nonsense'], excludeInboundPorts: ['0', '90-80'] });
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'TRELLIS_REDIRECT_OPTIONS_INVALID', side: 'input' });
    const problems = (caught as { details: { problems: string[] } }).details.problems;
    expect(problems).toEqual([
      'outbound port and inbound port are both 15006: each needs its own port',
      "proxy uid/gid: at least one is required, or the proxy's own connections would be captured again in an endless loop",
      'excluded inbound port: "0" is not a port or port range (expected 1-65535, or from-to such as 8000-8100)',
      'excluded inbound port: "90-80" is not a port or port range (expected 1-65535, or from-to such as 8000-8100)',
      'excluded outbound CIDR: "10.1.2.3/8" has host bits set; did you mean 10.0.0.0/8?',
      'excluded outbound CIDR: fd00::/8 is IPv6, but the IPv6 rules are not requested (--ipv6)',
      'excluded outbound CIDR: "nonsense" is not an IPv4 or IPv6 address range (expected e.g. 10.0.0.0/8 or fd00::/8)',
      'exclude SSH: on a VM port 22 is always excluded, so a broken sidecar cannot lock the operator out',
    ]);
  });

  it('returns a frozen config', () => {
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.proxyUids)).toBe(true);
  });
});
