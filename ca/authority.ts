/**
 * A certificate authority of one trust domain: a root (`createRootCa`), an intermediate under it for one zone
 * control plane (`createIntermediateCa`, pathLen 0), or an operator-supplied plug-in CA (`fromPem`, `load`).
 * It signs workload CSRs for identities its caller has authenticated (`signCsr`) and, for operators and tests,
 * issues a workload certificate with a fresh key (`issueWorkload`).
 *
 * Every certificate it signs ends within its own validity; every check runs before any signing, so a refused
 * request costs nothing and changes nothing.
 */
import { performance } from 'node:perf_hooks';
import type { KeyObject } from 'node:crypto';
import { InputError, TrellisError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import { certificatePem, parseCertificateDer, parseCertificatesPem, ZONE_NAME, type ParsedCertificate } from './certificate.js';
import { checkCsrAsksOnlyFor, parseCsr } from './csr.js';
import { checkPublicKey, generateKey, importPrivateKeyPem, privateKeyPem, signatureAlgorithmFor, spkiDer, type Curve, type SignatureAlgorithm } from './keys.js';
import { BACKDATE_MS, caTemplate, encodeName, keyIdentifier, leafProfile, leafTemplate, signCertificate, type LeafProfile } from './profile.js';
import { TrustBundle } from './bundle.js';
import { hasPath, parseSpiffeId, parseTrustDomain, type SpiffeId } from './spiffe-id.js';
import { readCaFiles, writeCaFiles } from './store.js';
import { describe as describeCert, verifyPath } from './verify.js';
import type { CaMetrics, IssuedKind } from './metrics.js';
import { CODE } from '../common/error-codes.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
export const DEFAULT_ROOT_TTL_MS = 3650 * DAY_MS;
export const DEFAULT_INTERMEDIATE_TTL_MS = 365 * DAY_MS;
export const DEFAULT_WORKLOAD_TTL_MS = DAY_MS;
/** Longest workload certificate unless the operator configures another maximum (Istio allows 90 days). */
export const DEFAULT_MAX_WORKLOAD_TTL_MS = 30 * DAY_MS;

export interface AuthorityOptions {
  /** Longest workload certificate this CA signs; longer requests are refused (default 30 days). */
  readonly maxTtlMs?: number;
  /** Lifetime of a workload certificate when the request names none (default 24 h). */
  readonly defaultTtlMs?: number;
  readonly metrics?: CaMetrics;
  /** Label under which `metrics` reports this CA's expiry (default: its common name). */
  readonly metricsName?: string;
  /** The clock; tests pass one (vitest fake timers also move `new Date()`). */
  readonly now?: () => Date;
}

export interface RootOptions extends AuthorityOptions {
  readonly trustDomain: string;
  readonly curve?: Curve;
  readonly ttlMs?: number;
  readonly commonName?: string;
  /** Start of validity; defaults to now minus the one-minute back-date. */
  readonly notBefore?: Date;
}

export interface IntermediateOptions extends AuthorityOptions {
  readonly name: string;
  /** The zone this intermediate serves: written into it (`OID.trellisZone`), so peers learn a caller's zone. */
  readonly zone?: string;
  readonly curve?: Curve;
  readonly ttlMs?: number;
  readonly notBefore?: Date;
}

export interface SignOptions {
  readonly ttlMs?: number;
}

export interface IssueOptions extends SignOptions {
  /** Explicit validity, for tests that need expired or not-yet-valid leaves; still clamped to the issuer's NotAfter. */
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly curve?: Curve;
}

export interface SignedCertificate {
  /** PEM leaf followed by the chain up to, not including, the root. */
  readonly certChainPem: string;
  readonly notAfter: Date;
  readonly serial: string;
}

export interface IssuedWorkload extends SignedCertificate {
  readonly keyPem: string;
  readonly trustBundlePem: string;
}

/** What a CA is made of; `fromParts` checks it all. */
export interface AuthorityParts {
  readonly certificate: ParsedCertificate;
  /** Issuers of `certificate` up to, not including, a bundle root (empty for a root). */
  readonly chain: readonly ParsedCertificate[];
  readonly key: KeyObject;
  readonly bundle: TrustBundle;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly certificate: ParsedCertificate;
  readonly chain: readonly ParsedCertificate[];
  readonly bundle: TrustBundle;
  readonly maxTtlMs: number;
  readonly defaultTtlMs: number;
  readonly name: string;
  private readonly key: KeyObject;
  private readonly algorithm: SignatureAlgorithm;
  private readonly profile: LeafProfile;
  /** PEM of this CA and its chain without the root, appended to every leaf. */
  private readonly issuerChainPem: string;
  private readonly metrics: CaMetrics | undefined;
  private readonly now: () => Date;

  private constructor(parts: AuthorityParts, trustDomain: string, options: AuthorityOptions) {
    this.trustDomain = trustDomain;
    this.certificate = parts.certificate;
    this.chain = Object.freeze([...parts.chain]);
    this.bundle = parts.bundle;
    this.key = parts.key;
    this.algorithm = signatureAlgorithmFor(parts.key);
    const isRoot = parts.bundle.contains(parts.certificate);
    // A zone intermediate's leaves carry its chain: the zone of their issuer is then provable from the leaf alone.
    const zoneChain = !isRoot && parts.certificate.zone !== undefined ? [parts.certificate.der, ...parts.chain.map((c) => c.der)] : undefined;
    this.profile = leafProfile(parts.certificate.subjectName, keyIdentifier(parts.certificate.spki), zoneChain);
    this.issuerChainPem = isRoot ? '' : [parts.certificate, ...parts.chain].map((c) => certificatePem(c.der)).join('');
    this.maxTtlMs = options.maxTtlMs ?? DEFAULT_MAX_WORKLOAD_TTL_MS;
    this.defaultTtlMs = Math.min(options.defaultTtlMs ?? DEFAULT_WORKLOAD_TTL_MS, this.maxTtlMs);
    this.now = options.now ?? (() => new Date());
    this.metrics = options.metrics;
    this.name = options.metricsName ?? describeCert(parts.certificate).replace(/^"|"$/g, '');
    this.metrics?.trackCa(this.name, parts.certificate.notAfter);
    Object.freeze(this);
  }

  /**
   * Checks that the parts form a usable CA: the key matches the certificate, the certificate is a CA allowed
   * to sign, its chain verifies up to a root of the bundle, and it is valid now. Plug-in CAs come through here.
   */
  static fromParts(parts: AuthorityParts, options: AuthorityOptions = {}): CertificateAuthority {
    const cert = parts.certificate;
    const now = (options.now ?? (() => new Date()))();
    const name = describeCert(cert);
    if (cert.basicConstraints?.ca !== true) throw new InputError(CODE.CA_NOT_A_CA, `${name} is not a CA certificate (basicConstraints CA:true missing)`);
    if (cert.keyUsage !== undefined && !cert.keyUsage.usages.has('keyCertSign')) throw new InputError(CODE.CA_NOT_A_CA, `${name} is not allowed to sign certificates (keyCertSign missing)`);
    if (!spkiDer(parts.key).equals(cert.spki)) throw new InputError(CODE.CA_KEY_MISMATCH, `the private key does not belong to ${name}`);
    checkPublicKey(cert.spki, `${name} key`);
    checkValidity(cert, now, name);
    for (const issuer of parts.chain) checkValidity(issuer, now, describeCert(issuer));
    const trustDomain = parts.bundle.trustDomain;
    // The CA's own chain must anchor in the bundle it hands out, or its leaves would be rejected everywhere.
    if (!parts.bundle.contains(cert)) {
      try {
        verifyCaChain([cert, ...parts.chain], parts.bundle, now);
      } catch (err) {
        throw new InputError(CODE.CA_CHAIN_INVALID, `${name} does not chain to the ${trustDomain} trust bundle: ${(err as Error).message}`, { cause: err });
      }
    }
    return new CertificateAuthority(parts, trustDomain, options);
  }

  /** A plug-in CA brought as PEM: the CA certificate followed by its chain, its key, and the roots to trust. */
  static fromPem(input: { certChainPem: string; keyPem: string; bundlePem?: string; trustDomain: string }, options: AuthorityOptions = {}): CertificateAuthority {
    const [certificate, ...rest] = parseCertificatesPem(input.certChainPem, 'CA certificate');
    if (certificate === undefined) throw new InputError(CODE.CA_NOT_A_CA, 'no CA certificate given');
    const key = importPrivateKeyPem(input.keyPem, 'CA key');
    // A chain that ends in a self-signed root: the root goes to the bundle, the rest stays in the chain.
    const chainRoots = rest.filter((c) => c.subjectName.equals(c.issuerName));
    const chain = rest.filter((c) => !chainRoots.includes(c));
    const selfSigned = certificate.subjectName.equals(certificate.issuerName) ? [certificate] : [];
    const bundle =
      input.bundlePem !== undefined ? TrustBundle.fromPem(input.trustDomain, input.bundlePem) : TrustBundle.fromCertificates(input.trustDomain, [...selfSigned, ...chainRoots]);
    return CertificateAuthority.fromParts({ certificate, chain, key, bundle }, options);
  }

  /**
   * Loads a CA directory (see ca/store.ts) and validates it like any plug-in CA. The trust domain comes from
   * the CA certificate's `spiffe://` URI SAN; `defaultTrustDomain` serves operator CAs that carry none.
   */
  static async load(dir: string, options: AuthorityOptions & { defaultTrustDomain?: string } = {}): Promise<CertificateAuthority> {
    const files = await readCaFiles(dir);
    const [first] = parseCertificatesPem(files.certChainPem, `CA certificate in ${dir}`);
    const named = first === undefined ? undefined : trustDomainOf(first);
    const trustDomain = named ?? (options.defaultTrustDomain === undefined ? undefined : parseTrustDomain(options.defaultTrustDomain));
    if (trustDomain === undefined) {
      throw new InputError(CODE.CA_TRUST_DOMAIN_UNKNOWN, `the CA certificate in ${dir} names no spiffe:// trust domain; give the trust domain explicitly (--trust-domain)`);
    }
    const input = { certChainPem: files.certChainPem, keyPem: files.keyPem, trustDomain, ...(files.bundlePem === undefined ? {} : { bundlePem: files.bundlePem }) };
    return CertificateAuthority.fromPem(input, options);
  }

  /** Writes this CA to a new directory (refusing to overwrite one): ca.crt, ca.key (0600), bundle.pem. */
  async save(dir: string): Promise<void> {
    await writeCaFiles(dir, { certChainPem: this.certChainPem, keyPem: this.exportKeyPem(), bundlePem: this.bundle.toPem() });
  }

  get notAfter(): Date {
    return this.certificate.notAfter;
  }

  get certificatePem(): string {
    return certificatePem(this.certificate.der);
  }

  /** CA certificate followed by its chain without the root (what `ca.crt` holds). */
  get certChainPem(): string {
    return [this.certificate, ...this.chain].map((c) => certificatePem(c.der)).join('');
  }

  /** The zone this CA serves, when it is a zone intermediate that names one. */
  get zone(): string | undefined {
    return this.isRoot ? undefined : this.certificate.zone;
  }

  get isRoot(): boolean {
    return this.bundle.contains(this.certificate);
  }

  /** PKCS#8 PEM of the signing key, for writing to a 0600 file; never log it. */
  exportKeyPem(): string {
    return privateKeyPem(this.key);
  }

  /** Same CA, new trust bundle (root rotation); the CA must still chain to it. */
  withBundle(bundle: TrustBundle): CertificateAuthority {
    return CertificateAuthority.fromParts({ certificate: this.certificate, chain: this.chain, key: this.key, bundle }, this.options());
  }

  private options(): AuthorityOptions {
    return { maxTtlMs: this.maxTtlMs, defaultTtlMs: this.defaultTtlMs, now: this.now, metricsName: this.name, ...(this.metrics ? { metrics: this.metrics } : {}) };
  }

  /**
   * Signs a workload CSR for `identity`, which the caller took from an authenticated credential. The CSR proves
   * possession of the key; the names it asks for are only compared, never copied.
   */
  async signCsr(csrPem: string, identity: SpiffeId, options: SignOptions = {}): Promise<SignedCertificate> {
    return this.measure('workload', () => {
      const window = this.leafWindow(identity, options);
      const csr = parseCsr(csrPem);
      checkCsrAsksOnlyFor(csr, identity);
      return this.signLeaf(identity, csr.spki, window);
    });
  }

  /** A workload certificate with a fresh key made here: for operators (`trellis ca issue`) and tests. */
  async issueWorkload(identity: SpiffeId, options: IssueOptions = {}): Promise<IssuedWorkload> {
    let window: { notBefore: Date; notAfter: Date };
    try {
      window = this.leafWindow(identity, options);
    } catch (err) {
      this.metrics?.recordFailure(err instanceof TrellisError ? err.code : CODE.CA_INTERNAL);
      throw err;
    }
    const { privateKey } = await generateKey(options.curve ?? 'P-256');
    const signed = await this.measure('workload', () => this.signLeaf(identity, spkiDer(privateKey), window));
    return Object.freeze({ ...signed, keyPem: privateKeyPem(privateKey), trustBundlePem: this.bundle.toPem() });
  }

  /** An intermediate CA for one zone control plane: pathLen 0, ending no later than this CA. */
  async createIntermediate(options: IntermediateOptions): Promise<CertificateAuthority> {
    const now = this.now();
    this.checkCanSign(now);
    const pathLen = this.certificate.basicConstraints?.pathLen;
    if (pathLen !== undefined && pathLen < 1) throw new InputError(CODE.CA_PATH_LENGTH, `${describeCert(this.certificate)} has pathLen ${pathLen} and cannot sign another CA`);
    const name = checkCaName(options.name);
    if (options.zone !== undefined && !ZONE_NAME.test(options.zone)) throw new InputError(CODE.CA_NAME_INVALID, `zone "${options.zone.slice(0, 80)}" is not a DNS label`);
    const ttl = options.ttlMs ?? DEFAULT_INTERMEDIATE_TTL_MS;
    const notBefore = options.notBefore ?? new Date(now.getTime() - BACKDATE_MS);
    const notAfter = new Date(Math.min(now.getTime() + ttl, this.certificate.notAfter.getTime()));
    const { privateKey } = await generateKey(options.curve ?? 'P-256');
    const spki = spkiDer(privateKey);
    const started = performance.now();
    const der = signCertificate(
      caTemplate({
        subjectName: encodeName({ organization: `Trellis ${this.trustDomain}`, commonName: name }),
        issuerName: this.certificate.subjectName,
        issuerKeyId: keyIdentifier(this.certificate.spki),
        spki,
        pathLen: 0,
        notBefore,
        notAfter,
        trustDomainUri: `spiffe://${this.trustDomain}`,
        ...(options.zone === undefined ? {} : { zone: options.zone }),
      }),
      this.key,
      this.algorithm,
    );
    this.metrics?.recordIssued('intermediate', (performance.now() - started) / 1000);
    const chain = this.isRoot ? [] : [this.certificate, ...this.chain];
    return CertificateAuthority.fromParts({ certificate: parseCertificateDer(der), chain, key: privateKey, bundle: this.bundle }, { ...this.options(), ...options, metricsName: name });
  }

  private leafWindow(identity: SpiffeId, options: IssueOptions): { notBefore: Date; notAfter: Date } {
    const now = this.now();
    if (identity.trustDomain !== this.trustDomain) {
      throw new InputError(CODE.CA_FOREIGN_TRUST_DOMAIN, `${identity.toString()} is outside this CA's trust domain ${this.trustDomain}`);
    }
    if (!hasPath(identity)) throw new InputError(CODE.SPIFFE_ID_INVALID, `${identity.toString()} names a trust domain, not a workload (a path is required)`);
    this.checkCanSign(now);
    const ttl = options.ttlMs ?? this.defaultTtlMs;
    if (!Number.isFinite(ttl) || ttl <= 0) throw new InputError(CODE.CA_TTL_INVALID, `certificate lifetime must be positive, got ${ttl} ms`);
    if (ttl > this.maxTtlMs) {
      throw new InputError(CODE.CA_TTL_TOO_LONG, `certificate lifetime ${formatDuration(ttl)} exceeds this CA's maximum of ${formatDuration(this.maxTtlMs)}`);
    }
    const notBefore = wholeSeconds(options.notBefore ?? new Date(now.getTime() - BACKDATE_MS));
    const wanted = options.notAfter ?? new Date(now.getTime() + ttl);
    // Certificates carry whole seconds; return exactly what the certificate will say.
    const notAfter = wholeSeconds(new Date(Math.min(wanted.getTime(), this.certificate.notAfter.getTime())));
    if (notAfter.getTime() <= notBefore.getTime()) throw new InputError(CODE.CA_TTL_INVALID, 'certificate would end before it starts');
    return { notBefore, notAfter };
  }

  private checkCanSign(now: Date): void {
    // Names are built only on failure: describing a certificate parses it again, too slow for every request.
    const t = now.getTime();
    for (const cert of [this.certificate, ...this.chain]) {
      if (t < cert.notBefore.getTime() || t > cert.notAfter.getTime()) {
        checkValidity(cert, now, cert === this.certificate ? `issuing CA ${describeCert(cert)}` : `issuing CA's parent ${describeCert(cert)}`);
      }
    }
  }

  private signLeaf(identity: SpiffeId, spki: Buffer, window: { notBefore: Date; notAfter: Date }): SignedCertificate {
    const template = leafTemplate(this.profile, identity.toString(), spki, window.notBefore, window.notAfter);
    const der = signCertificate(template, this.key, this.algorithm);
    return Object.freeze({ certChainPem: certificatePem(der) + this.issuerChainPem, notAfter: window.notAfter, serial: template.serial.toString('hex') });
  }

  private measure<T>(kind: IssuedKind, work: () => T): T {
    const started = performance.now();
    try {
      const result = work();
      this.metrics?.recordIssued(kind, (performance.now() - started) / 1000);
      return result;
    } catch (err) {
      if (err instanceof TrellisError) this.metrics?.recordFailure(err.code);
      else this.metrics?.recordFailure(CODE.CA_INTERNAL);
      throw err;
    }
  }
}

/** A new self-signed root: pathLen 1 (it signs zone intermediates, which sign leaves), 10 years by default. */
export async function createRootCa(options: RootOptions): Promise<CertificateAuthority> {
  const trustDomain = parseTrustDomain(options.trustDomain);
  const now = (options.now ?? (() => new Date()))();
  const { privateKey } = await generateKey(options.curve ?? 'P-256');
  const spki = spkiDer(privateKey);
  const name = encodeName({ organization: `Trellis ${trustDomain}`, commonName: checkCaName(options.commonName ?? `Trellis root CA ${trustDomain}`) });
  const notBefore = options.notBefore ?? new Date(now.getTime() - BACKDATE_MS);
  const notAfter = new Date(now.getTime() + (options.ttlMs ?? DEFAULT_ROOT_TTL_MS));
  const der = signCertificate(
    caTemplate({ subjectName: name, issuerName: name, issuerKeyId: undefined, spki, pathLen: 1, notBefore, notAfter, trustDomainUri: `spiffe://${trustDomain}` }),
    privateKey,
    signatureAlgorithmFor(privateKey),
  );
  const certificate = parseCertificateDer(der);
  return CertificateAuthority.fromParts({ certificate, chain: [], key: privateKey, bundle: TrustBundle.fromCertificates(trustDomain, [certificate]) }, options);
}

export function createIntermediateCa(parent: CertificateAuthority, options: IntermediateOptions): Promise<CertificateAuthority> {
  return parent.createIntermediate(options);
}

/** The trust domain a CA certificate names in its `spiffe://td` URI SAN, if any. */
export function trustDomainOf(cert: ParsedCertificate): string | undefined {
  for (const uri of cert.subjectAltNames?.uris ?? []) {
    try {
      const id = parseSpiffeId(uri);
      if (!hasPath(id)) return id.trustDomain;
    } catch {
      // not a SPIFFE URI
    }
  }
  return undefined;
}

function checkCaName(name: string): string {
  if (name.trim() === '' || name.length > 64 || !/^[\x20-\x7e]+$/.test(name)) {
    throw new InputError(CODE.CA_NAME_INVALID, `CA name "${name}" must be 1-64 printable characters`);
  }
  return name;
}

function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

function checkValidity(cert: ParsedCertificate, now: Date, name: string): void {
  if (now.getTime() < cert.notBefore.getTime()) {
    throw new InputError(CODE.CA_ISSUER_NOT_YET_VALID, `${name} is not valid before ${cert.notBefore.toISOString()}`);
  }
  if (now.getTime() > cert.notAfter.getTime()) throw new InputError(CODE.CA_ISSUER_EXPIRED, `${name} expired at ${cert.notAfter.toISOString()}`);
}

function verifyCaChain(certs: readonly ParsedCertificate[], bundle: TrustBundle, now: Date): void {
  verifyPath(certs, bundle, now, bundle.trustDomain);
}
