/**
 * `trellis ca init|intermediate|issue|inspect|bundle`: offline operations on the mesh CA.
 * Every argument is checked before anything is written, all usage errors are reported together, and a
 * refused command (exit code 2) leaves the file system as it found it. Keys are written 0600.
 */
import { promises as fs } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { REQUIRED, parseFlags, type CommandSpec, type FlagSpec, type FlagTable } from './flag-spec.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import { parseDuration } from '../common/duration.js';
import { InputError } from '../common/errors.js';
import { CertificateAuthority, createRootCa, DEFAULT_MAX_WORKLOAD_TTL_MS, DEFAULT_WORKLOAD_TTL_MS, trustDomainOf } from '../ca/authority.js';
import { TrustBundle } from '../ca/bundle.js';
import { parseCertificatesPem } from '../ca/certificate.js';
import { formatInspection, inspectCertificates } from '../ca/inspect.js';
import { parseCurve, type Curve } from '../ca/keys.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from '../ca/spiffe-id.js';
import { CA_FILES, assertNoCa, readPemFile } from '../ca/store.js';
import { CODE } from '../common/error-codes.js';

const USAGE = `Usage:
  trellis ca init --dir DIR --trust-domain TD [--curve P-256|P-384] [--ttl 3650d] [--name CN]
      A new root CA in DIR: ca.crt, ca.key (mode 0600), bundle.pem. Refuses to overwrite an existing CA.
  trellis ca intermediate --dir ROOTDIR --out DIR --name NAME [--zone ZONE] [--ttl 365d] [--curve P-256|P-384]
      An intermediate for one zone control plane (pathLen 0), never outliving its root.
  trellis ca issue --dir DIR --spiffe-id ID --out PREFIX [--ttl 24h] [--max-ttl 30d] [--curve P-256|P-384]
      A workload certificate with a fresh key: PREFIX.crt (leaf and chain, without the root), PREFIX.key (0600).
  trellis ca inspect FILE [--bundle BUNDLE.pem] [--json]
      Subject, SPIFFE ID, issuer chain, validity, key type, fingerprint and any problem.
      Exit code 0 when no problem is found, 1 when there is one, 2 when FILE holds no readable certificate.
  trellis ca bundle --dir DIR [--add ROOT.pem | --remove SHA256] [--format pem|spiffe]
      Print the trust bundle of a CA directory, or rotate roots: --add trusts a new root beside the current
      ones, --remove drops a retired one (bundle.pem is rewritten atomically).

Operator-supplied (plug-in) CA: put its certificate followed by its chain in DIR/ca.crt, its key in DIR/ca.key
(mode 0600) and the root(s) in DIR/bundle.pem; it is validated on load (key matches, is a CA, not expired,
chains to the bundle). If its certificate names no spiffe://TD URI, add --trust-domain TD to intermediate and bundle.

Rotating the root with no failed request:
  1. trellis ca init --dir NEW --trust-domain TD
  2. trellis ca bundle --dir NEW --add OLD/ca.crt, and --add NEW/ca.crt on every existing CA directory
     (old root, zone intermediates); distribute the two-root bundle to every workload.
  3. trellis ca intermediate --dir NEW --out ZONE2 ...; switch the zone control planes to sign with ZONE2.
  4. Once every certificate under the old root has expired: trellis ca bundle --dir D --remove OLD-SHA256.

Run \`trellis ca ACTION --help\` for the options of one action, each with its default.
`;

const CURVE = { type: 'string', value: 'P-256|P-384', help: 'curve of the new key', whenAbsent: 'P-256' } as const satisfies FlagSpec;
const PLUGIN_TRUST_DOMAIN = { type: 'string', value: 'TD', help: "trust domain of a plug-in CA whose certificate names none", whenAbsent: "the CA certificate's spiffe:// URI" } as const satisfies FlagSpec;

const INIT = {
  usage: 'trellis ca init --dir DIR --trust-domain TD [options]',
  about: 'A new root CA in DIR: ca.crt, ca.key (mode 0600), bundle.pem. Refuses to overwrite an existing CA.\nEvery argument is checked before anything is written.',
  flags: {
    dir: { type: 'string', value: 'DIR', help: 'directory of the new CA (created if missing)', whenAbsent: REQUIRED },
    'trust-domain': { type: 'string', value: 'TD', help: 'SPIFFE trust domain, e.g. example.org', whenAbsent: REQUIRED },
    curve: CURVE,
    ttl: { type: 'string', value: 'DURATION', help: 'lifetime of the root', whenAbsent: '3650d' },
    name: { type: 'string', value: 'CN', help: 'subject common name', whenAbsent: '"Trellis root CA <trust domain>"' },
  },
} as const satisfies CommandSpec;

const INTERMEDIATE = {
  usage: 'trellis ca intermediate --dir ROOTDIR --out DIR --name NAME [options]',
  about: 'An intermediate CA for one zone control plane (pathLen 0), never outliving its root.',
  flags: {
    dir: { type: 'string', value: 'ROOTDIR', help: 'the issuing CA directory', whenAbsent: REQUIRED },
    out: { type: 'string', value: 'DIR', help: 'directory of the new intermediate (must not hold a CA)', whenAbsent: REQUIRED },
    name: { type: 'string', value: 'NAME', help: 'its name (the zone)', whenAbsent: REQUIRED },
    zone: { type: 'string', value: 'ZONE', help: "the zone it serves, written into it: peers read a caller's zone from it", whenAbsent: 'none (its callers are "zone unknown")' },
    ttl: { type: 'string', value: 'DURATION', help: 'lifetime, clamped to the issuer', whenAbsent: '365d' },
    curve: CURVE,
    'trust-domain': PLUGIN_TRUST_DOMAIN,
  },
} as const satisfies CommandSpec;

const ISSUE = {
  usage: 'trellis ca issue --dir DIR --spiffe-id ID --out PREFIX [options]',
  about: 'A workload certificate with a fresh key: PREFIX.crt (leaf and chain, without the root), PREFIX.key (0600).',
  flags: {
    dir: { type: 'string', value: 'DIR', help: 'the issuing CA directory', whenAbsent: REQUIRED },
    'spiffe-id': { type: 'string', value: 'ID', help: 'spiffe://TD/ns/NS/sa/SERVICE', whenAbsent: REQUIRED },
    out: { type: 'string', value: 'PREFIX', help: 'writes PREFIX.crt and PREFIX.key (never overwritten)', whenAbsent: REQUIRED },
    ttl: { type: 'string', value: 'DURATION', help: 'lifetime of the certificate', whenAbsent: '24h' },
    'max-ttl': { type: 'string', value: 'DURATION', help: 'refuse a --ttl above this', whenAbsent: '30d' },
    curve: CURVE,
    'trust-domain': { type: 'string', value: 'TD', help: 'trust domain of a plug-in CA whose certificate names none', whenAbsent: "the --spiffe-id's" },
  },
} as const satisfies CommandSpec;

const INSPECT = {
  usage: 'trellis ca inspect FILE [--bundle BUNDLE.pem] [--json]',
  about: 'Subject, SPIFFE ID, issuer chain, validity, key type, fingerprint and any problem of the certificates in FILE.',
  flags: {
    bundle: { type: 'string', value: 'BUNDLE.pem', help: 'also verify the chain against these roots', whenAbsent: 'no chain verification' },
    json: { type: 'boolean', help: 'print the report as JSON', whenAbsent: 'off' },
    'trust-domain': { type: 'string', value: 'TD', help: 'trust domain of the --bundle roots', whenAbsent: 'the first one the roots name' },
  },
  footer: 'Exit status: 0 when no problem is found, 1 when there is one, 2 when FILE holds no readable certificate.',
} as const satisfies CommandSpec;

const BUNDLE = {
  usage: 'trellis ca bundle --dir DIR [--add ROOT.pem | --remove SHA256] [--format pem|spiffe]',
  about: 'Prints the trust bundle of a CA directory, or rotates roots: --add trusts a new root beside the current\nones, --remove drops a retired one (bundle.pem is rewritten atomically).',
  flags: {
    dir: { type: 'string', value: 'DIR', help: 'the CA directory', whenAbsent: REQUIRED },
    add: { type: 'string', value: 'ROOT.pem', help: 'add this root to bundle.pem', whenAbsent: 'none' },
    remove: { type: 'string', value: 'SHA256', help: 'remove the root with this fingerprint', whenAbsent: 'none' },
    format: { type: 'string', value: 'pem|spiffe', help: 'output format', whenAbsent: 'pem' },
    'trust-domain': PLUGIN_TRUST_DOMAIN,
  },
} as const satisfies CommandSpec;

type Values = Record<string, string | boolean | undefined>;

/** Problems found while checking arguments; all are reported together. */
type Problems = (string | InputError)[];

function usageError(problems: Problems): InputError {
  const [only] = problems;
  // A single coded error (an invalid SPIFFE ID, a bad duration) keeps its own code.
  if (problems.length === 1 && only instanceof InputError) return new InputError(only.code, `${only.message}\n(see trellis ca --help)`, { cause: only });
  const lines = problems.map((p) => (typeof p === 'string' ? p : p.message));
  return new InputError(CODE.CLI_USAGE, `${lines.join('\n')}\n(see trellis ca --help)`);
}

/** Runs every check and collects the failures, so one invocation reports all of them. */
function collect<T>(problems: Problems, check: () => T): T | undefined {
  try {
    return check();
  } catch (err) {
    if (err instanceof InputError) problems.push(err);
    else throw err;
    return undefined;
  }
}

function required(values: Values, name: string, problems: Problems): string | undefined {
  const value = values[name];
  if (typeof value !== 'string' || value === '') {
    problems.push(`--${name} is required`);
    return undefined;
  }
  return value;
}

/** The subcommand's flags, and the list its problems are collected in (a stray argument is the first). */
function flagsOf<F extends FlagTable>(spec: CommandSpec<F>, argv: readonly string[]): { values: ReturnType<typeof parseFlags<F>>['values']; problems: Problems } {
  const { values, positionals } = parseFlags(spec, argv);
  const problems: Problems = [];
  if (positionals.length > 0) problems.push(`unexpected argument "${positionals[0]}"`);
  return { values, problems };
}

function curveOf(values: Values, problems: Problems): Curve | undefined {
  return typeof values.curve === 'string' ? collect(problems, () => parseCurve(values.curve as string)) : 'P-256';
}

function durationOf(values: Values, name: string, fallback: number, problems: Problems): number | undefined {
  const text = values[name];
  return typeof text === 'string' ? collect(problems, () => parseDuration(text, `--${name}`)) : fallback;
}

async function init(argv: string[], ctx: CommandContext): Promise<number> {
  const { values, problems } = flagsOf(INIT, argv);
  const dir = required(values, 'dir', problems);
  const td = required(values, 'trust-domain', problems);
  const trustDomain = td === undefined ? undefined : collect(problems, () => parseTrustDomain(td));
  const curve = curveOf(values, problems);
  const ttlMs = durationOf(values, 'ttl', 3650 * 86_400_000, problems);
  if (problems.length > 0 || dir === undefined || trustDomain === undefined || curve === undefined || ttlMs === undefined) throw usageError(problems);
  await assertNoCa(resolve(dir));
  const root = await createRootCa({ trustDomain, curve, ttlMs, ...(values.name === undefined ? {} : { commonName: values.name }) });
  await root.save(resolve(dir));
  ctx.stdout.write(`root CA for ${trustDomain} written to ${dir} (${CA_FILES.certificate}, ${CA_FILES.key}, ${CA_FILES.bundle}); valid until ${root.notAfter.toISOString()}\n`);
  return EXIT_OK;
}

async function intermediate(argv: string[], ctx: CommandContext): Promise<number> {
  const { values, problems } = flagsOf(INTERMEDIATE, argv);
  const dir = required(values, 'dir', problems);
  const out = required(values, 'out', problems);
  const name = required(values, 'name', problems);
  const curve = curveOf(values, problems);
  const ttlMs = durationOf(values, 'ttl', 365 * 86_400_000, problems);
  if (problems.length > 0 || dir === undefined || out === undefined || name === undefined || curve === undefined || ttlMs === undefined) throw usageError(problems);
  await assertNoCa(resolve(out));
  const parent = await CertificateAuthority.load(resolve(dir), trustDomainOption(values));
  const zone = await parent.createIntermediate({ name, ttlMs, curve, ...(values.zone === undefined ? {} : { zone: values.zone }) });
  await zone.save(resolve(out));
  const clamped = zone.notAfter.getTime() < Date.now() + ttlMs - 120_000 ? ' (clamped to its issuer)' : '';
  ctx.stdout.write(`intermediate CA "${name}" for ${zone.trustDomain} written to ${out}; valid until ${zone.notAfter.toISOString()}${clamped}\n`);
  return EXIT_OK;
}

async function issue(argv: string[], ctx: CommandContext): Promise<number> {
  const { values, problems } = flagsOf(ISSUE, argv);
  const dir = required(values, 'dir', problems);
  const idText = required(values, 'spiffe-id', problems);
  const id: SpiffeId | undefined = idText === undefined ? undefined : collect(problems, () => parseSpiffeId(idText));
  const out = required(values, 'out', problems);
  const curve = curveOf(values, problems);
  const ttlMs = durationOf(values, 'ttl', DEFAULT_WORKLOAD_TTL_MS, problems);
  const maxTtlMs = durationOf(values, 'max-ttl', DEFAULT_MAX_WORKLOAD_TTL_MS, problems);
  if (problems.length > 0 || dir === undefined || id === undefined || out === undefined || curve === undefined || ttlMs === undefined || maxTtlMs === undefined) {
    throw usageError(problems);
  }
  const certPath = resolve(`${out}.crt`);
  const keyPath = resolve(`${out}.key`);
  for (const path of [certPath, keyPath]) {
    if (await exists(path)) throw new InputError(CODE.CLI_EXISTS, `${path} already exists; refusing to overwrite it`);
  }
  if (!(await exists(dirname(certPath)))) throw new InputError(CODE.CLI_NO_DIR, `directory ${dirname(certPath)} does not exist`);
  // A plug-in CA without a spiffe:// SAN serves the trust domain of the requested ID (or --trust-domain).
  const ca = await CertificateAuthority.load(resolve(dir), { maxTtlMs, defaultTrustDomain: (values['trust-domain'] as string | undefined) ?? id.trustDomain });
  const issued = await ca.issueWorkload(id, { ttlMs, curve });
  await writeFileAtomic(keyPath, issued.keyPem, { mode: 0o600, exclusive: true });
  try {
    await writeFileAtomic(certPath, issued.certChainPem, { mode: 0o644, exclusive: true });
  } catch (err) {
    await fs.unlink(keyPath).catch(() => undefined);
    throw err;
  }
  ctx.stdout.write(`${id.toString()}: ${certPath} and ${keyPath}; serial ${issued.serial}, valid until ${issued.notAfter.toISOString()}\n`);
  return EXIT_OK;
}

async function inspect(argv: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(INSPECT, argv);
  if (positionals.length !== 1) throw usageError(['inspect takes exactly one FILE']);
  const pem = await readPemFile(resolve(positionals[0] as string), 'inspect');
  let bundle: TrustBundle | undefined;
  if (values.bundle !== undefined) {
    const bundlePem = await readPemFile(resolve(values.bundle), '--bundle');
    const roots = parseCertificatesPem(bundlePem, '--bundle');
    const td = values['trust-domain'] ?? roots.map(trustDomainOf).find((t) => t !== undefined);
    if (td === undefined) throw new InputError(CODE.CLI_USAGE, '--bundle roots name no trust domain; give --trust-domain');
    bundle = TrustBundle.fromCertificates(parseTrustDomain(td), roots);
  }
  const report = inspectCertificates(pem, bundle === undefined ? {} : { bundle });
  ctx.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatInspection(report));
  return report.problems.length === 0 ? EXIT_OK : EXIT_FAILURE;
}

async function bundle(argv: string[], ctx: CommandContext): Promise<number> {
  const { values, problems } = flagsOf(BUNDLE, argv);
  const dir = required(values, 'dir', problems);
  const format = values.format ?? 'pem';
  if (format !== 'pem' && format !== 'spiffe') problems.push(`--format must be pem or spiffe, not "${format}"`);
  if (values.add !== undefined && values.remove !== undefined) problems.push('give --add or --remove, not both');
  if (problems.length > 0 || dir === undefined) throw usageError(problems);
  const ca = await CertificateAuthority.load(resolve(dir), trustDomainOption(values));
  const bundlePath = resolve(dir, CA_FILES.bundle);
  const current = TrustBundle.fromPem(ca.trustDomain, await readPemFile(bundlePath, 'trust bundle'));
  let next = current;
  if (values.add !== undefined) next = current.withRoot(await readPemFile(resolve(values.add), '--add'));
  if (values.remove !== undefined) next = current.withoutRoot(values.remove);
  if (next !== current) {
    // The CA must still chain to what it hands out, or every leaf it signs would be refused.
    ca.withBundle(next);
    await writeFileAtomic(bundlePath, next.toPem(), { mode: 0o644 });
    ctx.stderr.write(`${bundlePath} now holds ${next.roots.length} root(s)\n`);
  }
  ctx.stdout.write(format === 'pem' ? next.toPem() : `${JSON.stringify(next.toSpiffeJson(), null, 2)}\n`);
  return EXIT_OK;
}

function trustDomainOption(values: Values): { defaultTrustDomain?: string } {
  const td = values['trust-domain'];
  return typeof td === 'string' ? { defaultTrustDomain: td } : {};
}

async function exists(path: string): Promise<boolean> {
  return fs.stat(path).then(
    () => true,
    () => false,
  );
}

const ACTIONS: Readonly<Record<string, (argv: string[], ctx: CommandContext) => Promise<number>>> = { init, intermediate, issue, inspect, bundle };

export const caCommand: Command = {
  name: 'ca',
  usage: USAGE,
  forms: { init: INIT, intermediate: INTERMEDIATE, issue: ISSUE, inspect: INSPECT, bundle: BUNDLE },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [action, ...rest] = argv;
    const run = action === undefined ? undefined : ACTIONS[action];
    if (run === undefined) {
      ctx.stderr.write(action === undefined ? USAGE : `trellis ca: unknown action "${action}"\n\n${USAGE}`);
      return EXIT_USAGE;
    }
    return run(rest, ctx);
  },
};
