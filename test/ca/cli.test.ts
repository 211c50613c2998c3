import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { parseCertificatesPem } from '../../ca/certificate.js';
import { TrustBundle } from '../../ca/bundle.js';
import { zoneOfLeaf } from '../../ca/zone.js';
import { createRootCa } from '../../ca/authority.js';

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

async function trellis(...argv: string[]): Promise<Run> {
  const { code, stdout, stderr } = await runCli(argv);
  return { code, out: stdout, err: stderr };
}

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-ca-cli-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('trellis ca', () => {
  it('init → intermediate → issue → inspect', async () => {
    const base = tempDir();
    const init = await trellis('ca', 'init', '--dir', join(base, 'root'), '--trust-domain', 'example.org');
    expect(init).toMatchObject({ code: 0 });
    expect(readdirSync(join(base, 'root')).sort()).toEqual(['bundle.pem', 'ca.crt', 'ca.key']);
    expect(statSync(join(base, 'root', 'ca.key')).mode & 0o777).toBe(0o600);

    expect((await trellis('ca', 'intermediate', '--dir', join(base, 'root'), '--out', join(base, 'bad'), '--name', 'zone-a', '--zone', 'Zone A')).code).toBe(2);
    expect((await trellis('ca', 'intermediate', '--dir', join(base, 'root'), '--out', join(base, 'zone'), '--name', 'zone-a', '--zone', 'zone-a')).code).toBe(0);
    expect(statSync(join(base, 'zone', 'ca.key')).mode & 0o777).toBe(0o600);

    const issue = await trellis('ca', 'issue', '--dir', join(base, 'zone'), '--spiffe-id', 'spiffe://example.org/ns/shop/sa/cart', '--out', join(base, 'cart'), '--ttl', '2h');
    expect(issue.code).toBe(0);
    expect(statSync(join(base, 'cart.key')).mode & 0o777).toBe(0o600);
    const chain = parseCertificatesPem(readFileSync(join(base, 'cart.crt'), 'utf8'), 'cart.crt');
    expect(chain).toHaveLength(2);
    expect(chain[0]?.subjectAltNames?.uris).toEqual(['spiffe://example.org/ns/shop/sa/cart']);
    // The intermediate names its zone, and its leaves prove it.
    expect(chain[1]?.zone).toBe('zone-a');
    expect(zoneOfLeaf(chain[0]!, TrustBundle.fromPem('example.org', readFileSync(join(base, 'root', 'bundle.pem'), 'utf8')))).toBe('zone-a');
    expect((chain[0]?.notAfter.getTime() ?? 0) - Date.now()).toBeGreaterThan(2 * 3_600_000 - 5_000);

    const inspect = await trellis('ca', 'inspect', join(base, 'cart.crt'), '--bundle', join(base, 'root', 'bundle.pem'));
    expect(inspect.code).toBe(0);
    expect(inspect.out).toContain('SPIFFE ID:    spiffe://example.org/ns/shop/sa/cart');
    expect(inspect.out).toContain('key:          ECDSA P-256');
    expect(inspect.out).toMatch(/valid: .* \(1h59m\d*s? left\)|\(2h left\)/);
    expect(inspect.out).toMatch(/SHA-256: +([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    expect(inspect.out).toContain('Chain: verified, chains to root');
    expect(inspect.out).toContain('No problems found.');
  });

  it('P-384 on request', async () => {
    const base = tempDir();
    expect((await trellis('ca', 'init', '--dir', base, '--trust-domain', 'example.org', '--curve', 'P-384')).code).toBe(0);
    const inspect = await trellis('ca', 'inspect', join(base, 'ca.crt'));
    expect(inspect.out).toContain('ECDSA P-384');
    expect(inspect.out).toContain('CA:           yes, pathLen 1');
  });

  it('refuses to overwrite an existing CA, and changes nothing', async () => {
    const base = tempDir();
    expect((await trellis('ca', 'init', '--dir', base, '--trust-domain', 'example.org')).code).toBe(0);
    const key = readFileSync(join(base, 'ca.key'), 'utf8');
    const again = await trellis('ca', 'init', '--dir', base, '--trust-domain', 'example.org');
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already exists; refusing to overwrite/);
    expect(readFileSync(join(base, 'ca.key'), 'utf8')).toBe(key);
  });

  it('reports every usage problem at once with exit code 2, writing nothing', async () => {
    const base = tempDir();
    const run = await trellis('ca', 'init', '--dir', join(base, 'x'), '--trust-domain', 'Example.org:80', '--curve', 'P-521', '--ttl', 'forever');
    expect(run.code).toBe(2);
    expect(run.err).toMatch(/lowercase/);
    expect(run.err).toMatch(/unsupported curve "P-521"/);
    expect(run.err).toMatch(/--ttl: "forever" is not a duration/);
    expect(existsSync(join(base, 'x'))).toBe(false);
  });

  it('issue refuses an invalid SPIFFE ID, a foreign trust domain, a TTL beyond the maximum and an expired issuer: exit 2, nothing written', async () => {
    const base = tempDir();
    await trellis('ca', 'init', '--dir', join(base, 'root'), '--trust-domain', 'example.org');
    const cases: [string[], RegExp][] = [
      [['--spiffe-id', 'spiffe://example.org/ns/shop/sa/cart/'], /must not end with "\/"/],
      [['--spiffe-id', 'spiffe://other.org/ns/shop/sa/cart'], /outside this CA's trust domain example.org/],
      [['--spiffe-id', 'spiffe://example.org'], /names a trust domain, not a workload/],
      [['--spiffe-id', 'spiffe://example.org/ns/a/sa/b', '--ttl', '31d'], /exceeds this CA's maximum of 30d/],
      [['--spiffe-id', 'spiffe://example.org/ns/a/sa/b', '--ttl', '2h', '--max-ttl', '1h'], /exceeds this CA's maximum of 1h/],
    ];
    for (const [args, message] of cases) {
      const run = await trellis('ca', 'issue', '--dir', join(base, 'root'), '--out', join(base, 'leaf'), ...args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.err).toMatch(message);
      expect(existsSync(join(base, 'leaf.crt')) || existsSync(join(base, 'leaf.key'))).toBe(false);
    }
    // An issuer that has expired: a root made two hours ago with a one-hour lifetime.
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await (await createRootCa({ trustDomain: 'example.org', ttlMs: 3_600_000, now: () => twoHoursAgo })).save(join(base, 'brief'));
    const expired = await trellis('ca', 'issue', '--dir', join(base, 'brief'), '--spiffe-id', 'spiffe://example.org/ns/a/sa/b', '--out', join(base, 'leaf'));
    expect(expired.code).toBe(2);
    expect(expired.err).toMatch(/expired at/);
    expect(existsSync(join(base, 'leaf.key'))).toBe(false);
  });

  it('issue refuses to overwrite an existing key', async () => {
    const base = tempDir();
    await trellis('ca', 'init', '--dir', join(base, 'root'), '--trust-domain', 'example.org');
    writeFileSync(join(base, 'leaf.key'), 'precious');
    const run = await trellis('ca', 'issue', '--dir', join(base, 'root'), '--spiffe-id', 'spiffe://example.org/ns/a/sa/b', '--out', join(base, 'leaf'));
    expect(run.code).toBe(2);
    expect(readFileSync(join(base, 'leaf.key'), 'utf8')).toBe('precious');
    expect(existsSync(join(base, 'leaf.crt'))).toBe(false);
  });

  it('inspect exits 1 on a chain from another trust domain, 2 on garbage, 0 on a healthy CA certificate', async () => {
    const base = tempDir();
    await trellis('ca', 'init', '--dir', join(base, 'root'), '--trust-domain', 'example.org');
    await trellis('ca', 'init', '--dir', join(base, 'other'), '--trust-domain', 'other.org');
    await trellis('ca', 'issue', '--dir', join(base, 'other'), '--spiffe-id', 'spiffe://other.org/ns/a/sa/b', '--out', join(base, 'foreign'));
    const foreign = await trellis('ca', 'inspect', join(base, 'foreign.crt'), '--bundle', join(base, 'root', 'bundle.pem'));
    expect(foreign.code).toBe(1);
    expect(foreign.out).toMatch(/Chain: NOT verified: .*other.org.*example.org/);

    writeFileSync(join(base, 'garbage.pem'), 'hello\n');
    const garbage = await trellis('ca', 'inspect', join(base, 'garbage.pem'));
    expect(garbage.code).toBe(2);
    expect(garbage.err).toMatch(/no "-----BEGIN CERTIFICATE-----" block/);

    const json = JSON.parse((await trellis('ca', 'inspect', join(base, 'root', 'ca.crt'), '--json')).out) as { certificates: { kind: string; selfSigned: boolean }[]; problems: string[] };
    expect(json.certificates[0]).toMatchObject({ kind: 'ca', selfSigned: true });
    expect(json.problems).toEqual([]);
  });

  it('bundle: adds and removes roots, prints the SPIFFE bundle with a growing sequence', async () => {
    const base = tempDir();
    await trellis('ca', 'init', '--dir', join(base, 'old'), '--trust-domain', 'example.org');
    await trellis('ca', 'init', '--dir', join(base, 'new'), '--trust-domain', 'example.org');
    const add = await trellis('ca', 'bundle', '--dir', join(base, 'old'), '--add', join(base, 'new', 'ca.crt'), '--format', 'spiffe');
    expect(add.code).toBe(0);
    const doc = JSON.parse(add.out) as { keys: { use: string }[]; spiffe_sequence: number };
    expect(doc.keys.map((k) => k.use)).toEqual(['x509-svid', 'x509-svid']);
    expect(parseCertificatesPem(readFileSync(join(base, 'old', 'bundle.pem'), 'utf8'), 'bundle')).toHaveLength(2);
    // The old root's own directory cannot drop the old root: its CA would no longer chain to its bundle.
    const oldFingerprint = /SHA-256: +(\S+)/.exec((await trellis('ca', 'inspect', join(base, 'old', 'ca.crt'))).out)?.[1] as string;
    const refused = await trellis('ca', 'bundle', '--dir', join(base, 'old'), '--remove', oldFingerprint);
    expect(refused.code).toBe(2);
    expect(parseCertificatesPem(readFileSync(join(base, 'old', 'bundle.pem'), 'utf8'), 'bundle')).toHaveLength(2);
  });

  it('prints its usage for an unknown action', async () => {
    const run = await trellis('ca', 'frobnicate');
    expect(run.code).toBe(2);
    expect(run.err).toContain('trellis ca init --dir DIR --trust-domain TD');
  });
});
