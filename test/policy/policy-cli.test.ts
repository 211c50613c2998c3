import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { captureCli, type CapturedCli } from '../helpers/cli.js';

const capture = (): CapturedCli => captureCli();

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = capture();
  const code = await main(argv, io.ctx);
  return { code, out: io.out(), err: io.err() };
}

const PAYMENTS = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  rules:
    - action: allow
      from: [orders, "billing/invoicer"]
      http: { methods: [POST], paths: ["/charge", "/refunds/*"] }
    - action: deny
      from: ["sandbox/*"]
`;
const MESH = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: no-legacy, namespace: trellis-system }
spec:
  destination: "*"
  rules:
    - { action: deny, from: ["legacy/*"] }
---
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: audit-orders, namespace: trellis-system }
spec:
  destination: "shop/payments"
  mode: dry-run
  rules:
    - { action: deny, from: ["shop/orders"], http: { paths: ["/refunds/*"] } }
`;

describe('trellis policy check', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-policy-cli-'));
    await writeFile(join(dir, 'payments.yaml'), PAYMENTS);
    await writeFile(join(dir, 'mesh.yml'), MESH);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints a one-line summary and exits 0 for valid files and directories', async () => {
    const r = await run(['policy', 'check', join(dir, 'payments.yaml'), join(dir, 'mesh.yml')]);
    expect(r).toEqual({ code: 0, out: 'ok: 3 policies in 2 files\n', err: '' });
    expect((await run(['policy', 'check', dir])).out).toBe('ok: 3 policies in 2 files\n');
  });

  it('prints every error as file:line:column and exits 2', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, PAYMENTS.replace('action: deny', 'action: refuse').replace('name: payments-callers', 'name: other').replace('[orders, ', '[Orders, '));
    const missing = join(dir, 'missing.yaml');
    const r = await run(['policy', 'check', join(dir, 'payments.yaml'), bad, missing]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    const lines = r.err.trimEnd().split('\n');
    expect(lines).toEqual([
      `${missing}: cannot read (ENOENT)`,
      expect.stringMatching(new RegExp(`^${bad}:8:14: spec\\.rules\\[0\\]\\.from\\[0\\]: .*"Orders"`)),
      `${bad}:10:15: spec.rules[1].action: expected one of "allow", "deny", got "refuse"`,
      '3 errors: policy rejected (nothing would be applied)',
    ]);
  });

  it('uses --root-namespace to decide which policies may name other namespaces', async () => {
    const admin = join(dir, 'admin.yaml');
    await writeFile(admin, MESH.replaceAll('trellis-system', 'mesh-admin'));
    const withDefault = await run(['policy', 'check', admin]);
    expect(withDefault.code).toBe(2);
    expect(withDefault.err).toContain('only policies in the root namespace "trellis-system"');
    expect((await run(['policy', 'check', '--root-namespace', 'mesh-admin', admin])).out).toBe('ok: 2 policies in 1 file\n');
    expect((await run(['policy', 'check', '--root-namespace', 'Bad_NS', admin])).code).toBe(2);
  });

  it('refuses a missing subcommand or no files with usage and exit 2, and prints help', async () => {
    expect((await run(['policy'])).code).toBe(2);
    const none = await run(['policy', 'check']);
    expect(none.code).toBe(2);
    expect(none.err).toContain('no policy files given');
    const help = await run(['policy', 'check', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: trellis policy check');
  });
});

describe('trellis explain', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trellis-explain-'));
    await writeFile(join(dir, 'payments.yaml'), PAYMENTS);
    await writeFile(join(dir, 'mesh.yaml'), MESH);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('answers allow, naming the deciding policy, its file and the rule text', async () => {
    const r = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments', '--method', 'POST', '--path', '/charge']);
    expect(r.code).toBe(0);
    // The traffic-management section follows (test/policy/traffic/explain-traffic.test.ts).
    expect(r.out.split('\nroute rule:')[0]).toBe(
      [
        'ALLOW: shop/orders -> shop/payments (HTTP POST /charge)',
        '  allowed by rule 0 of policy shop/payments-callers',
        '',
        `policy shop/payments-callers in ${join(dir, 'payments.yaml')} (destination "payments", mode enforce), rule 0:`,
        '  - action: allow',
        '    from:',
        '      - orders',
        '      - billing/invoicer',
        '    http:',
        '      methods:',
        '        - POST',
        '      paths:',
        '        - /charge',
        '        - /refunds/*',
        '',
      ].join('\n'),
    );
  });

  it('answers deny for a mesh-wide root deny, and for no matching rule lists the destination\'s policies', async () => {
    const root = await run(['explain', '--policy', dir, '--from', 'legacy/old', '--to', 'shop/payments']);
    expect(root.code).toBe(0);
    expect(root.out.startsWith('DENY: legacy/old -> shop/payments (TCP stream)\n  denied by rule 0 of policy trellis-system/no-legacy\n')).toBe(true);
    const tcp = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments']);
    expect(tcp.out).toContain('DENY: shop/orders -> shop/payments (TCP stream)');
    expect(tcp.out).toContain('policies for this destination (none has a rule that allows this caller):');
    expect(tcp.out).toContain('  shop/payments-callers in ');
    const meshWide = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'bank/vault']);
    expect(meshWide.out).toContain(`  trellis-system/no-legacy in ${join(dir, 'mesh.yaml')} (destination "*", mode enforce, 1 rule)`);
    const nothing = await run(['explain', '--policy', join(dir, 'payments.yaml'), '--from', 'shop/orders', '--to', 'bank/vault']);
    expect(nothing.out).toContain('no policy names bank/vault as its destination');
  });

  it('shows a dry-run denial as allowed but not enforced', async () => {
    const r = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments', '--method', 'POST', '--path', '/refunds/7']);
    expect(r.out).toMatch(/^ALLOW \(dry-run policy would deny; not enforced\)/);
    expect(r.out).toContain('policy trellis-system/audit-orders in');
  });

  it('takes a SPIFFE ID as the caller: another trust domain never matches', async () => {
    const same = await run(['explain', '--policy', dir, '--from', 'spiffe://mesh.test/ns/shop/sa/orders', '--to', 'shop/payments', '--method', 'POST', '--path', '/charge', '--trust-domain', 'mesh.test']);
    expect(same.out).toMatch(/^ALLOW/);
    const other = await run(['explain', '--policy', dir, '--from', 'spiffe://evil.test/ns/shop/sa/orders', '--to', 'shop/payments', '--method', 'POST', '--path', '/charge', '--trust-domain', 'mesh.test']);
    expect(other.out).toMatch(/^DENY/);
    expect(other.out).toContain('trust domain');
  });

  it('allows a caller of a federated trust domain only where a rule names it by SPIFFE ID', async () => {
    await writeFile(join(dir, 'federated.yaml'), `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: ledger-callers, namespace: bank }
spec:
  destination: ledger
  rules:
    - action: allow
      from: [orders, "spiffe://other.test/ns/shop/sa/billing"]
`);
    const args = (from: string): string[] => ['explain', '--policy', dir, '--from', from, '--to', 'bank/ledger', '--trust-domain', 'mesh.test'];
    expect((await run(args('spiffe://other.test/ns/shop/sa/billing'))).out).toMatch(/^ALLOW: .*\n {2}allowed by rule 0 of policy bank\/ledger-callers/);
    // A short name never matches a foreign trust domain, even one some rule names.
    expect((await run(args('spiffe://other.test/ns/bank/sa/orders'))).out).toMatch(/^DENY/);
    expect((await run(args('spiffe://third.test/ns/shop/sa/billing'))).out).toMatch(/^DENY/);
    expect((await run(args('spiffe://mesh.test/ns/bank/sa/orders'))).out).toMatch(/^ALLOW/);
  });

  it('prints JSON with --json and exits 3 for a denial with --exit-code', async () => {
    const r = await run(['explain', '--policy', join(dir, 'payments.yaml'), '--from', 'sandbox/x', '--to', 'shop/payments', '--json', '--exit-code']);
    expect(r.code).toBe(3);
    const parsed = JSON.parse(r.out) as { decision: { allowed: boolean; policy: string; rule: number }; rule: unknown };
    expect(parsed.decision).toMatchObject({ allowed: false, policy: 'shop/payments-callers', rule: 1 });
    expect(parsed.rule).toEqual({ action: 'deny', from: ['sandbox/*'] });
  });

  it('refuses bad input with exit 2: missing flags, bad names, half an HTTP request, invalid policy', async () => {
    expect((await run(['explain', '--policy', dir, '--to', 'shop/payments'])).err).toContain('--from is required');
    expect((await run(['explain', '--policy', dir, '--from', 'orders', '--to', 'shop/payments'])).code).toBe(2);
    expect((await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments', '--method', 'GET'])).err).toContain('--method and --path go together');
    await writeFile(join(dir, 'broken.yaml'), 'apiVersion: nope\n');
    const broken = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments']);
    expect(broken.code).toBe(2);
    expect(broken.err).toContain('broken.yaml:1:13: apiVersion: expected one of "trellis.dev/v1alpha1"');
    expect((await run(['explain', '--policy', join(dir, 'nope'), '--from', 'shop/orders', '--to', 'shop/payments'])).code).toBe(2);
  });
});
