import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync, statSync, chmodSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { CertificateAuthority, createIntermediateCa, createRootCa, DEFAULT_MAX_WORKLOAD_TTL_MS } from '../../ca/authority.js';
import { parseCertificatesPem, type ParsedCertificate } from '../../ca/certificate.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import { CaMetrics } from '../../ca/metrics.js';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { OID } from '../../ca/certificate.js';
import type { TrellisError } from '../../common/errors.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ID = parseSpiffeId('spiffe://example.org/ns/shop/sa/cart');

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-ca-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function refusalOf(promise: Promise<unknown>): Promise<TrellisError> {
  try {
    await promise;
  } catch (err) {
    return err as TrellisError;
  }
  throw new Error('expected a refusal');
}

function first(pem: string): ParsedCertificate {
  const cert = parseCertificatesPem(pem, 'test')[0];
  if (cert === undefined) throw new Error('no certificate');
  return cert;
}

describe('CA profiles', () => {
  it('root: self-signed, CA:true pathLen 1, critical keyCertSign+cRLSign, 10 years, P-256', async () => {
    const root = await createRootCa({ trustDomain: 'example.org' });
    const cert = root.certificate;
    expect(root.isRoot).toBe(true);
    expect(cert.issuerName.equals(cert.subjectName)).toBe(true);
    expect(cert.basicConstraints).toEqual({ ca: true, pathLen: 1, critical: true });
    expect(cert.keyUsage?.critical).toBe(true);
    expect([...(cert.keyUsage?.usages ?? [])].sort()).toEqual(['cRLSign', 'keyCertSign']);
    expect(cert.signatureAlgorithm).toBe('1.2.840.10045.4.3.2');
    const years = (cert.notAfter.getTime() - Date.now()) / (365 * DAY);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(cert.subjectAltNames?.uris).toEqual(['spiffe://example.org']);
    expect(cert.subjectKeyId).toBe(cert.authorityKeyId);
  });

  it('root with P-384 on request signs with ECDSA-SHA384', async () => {
    const root = await createRootCa({ trustDomain: 'example.org', curve: 'P-384' });
    expect(root.certificate.signatureAlgorithm).toBe('1.2.840.10045.4.3.3');
    const leaf = first((await root.issueWorkload(ID)).certChainPem);
    expect(leaf.signatureAlgorithm).toBe('1.2.840.10045.4.3.3');
  });

  it('intermediate: pathLen 0, never outliving its root, chained by key identifiers', async () => {
    const root = await createRootCa({ trustDomain: 'example.org', ttlMs: 30 * DAY });
    const zone = await createIntermediateCa(root, { name: 'zone-a', ttlMs: 365 * DAY });
    expect(zone.isRoot).toBe(false);
    expect(zone.certificate.basicConstraints).toEqual({ ca: true, pathLen: 0, critical: true });
    expect(zone.notAfter.getTime()).toBe(root.notAfter.getTime());
    expect(zone.certificate.authorityKeyId).toBe(root.certificate.subjectKeyId);
    expect(zone.certificate.issuerName.equals(root.certificate.subjectName)).toBe(true);
  });

  it('leaf: empty subject, one critical URI SAN, CA:false, critical digitalSignature only, server+client auth, back-dated a minute, 24 h', async () => {
    const root = await createRootCa({ trustDomain: 'example.org' });
    const zone = await root.createIntermediate({ name: 'zone-a' });
    const before = Date.now();
    const issued = await zone.issueWorkload(ID);
    const leaf = first(issued.certChainPem);
    expect(leaf.subjectEmpty).toBe(true);
    expect(leaf.subjectAltNames).toEqual({ uris: [ID.toString()], dnsNames: [], others: 0, critical: true });
    expect(leaf.basicConstraints).toEqual({ ca: false, pathLen: undefined, critical: true });
    expect(leaf.keyUsage?.critical).toBe(true);
    expect([...(leaf.keyUsage?.usages ?? [])]).toEqual(['digitalSignature']);
    expect(leaf.extKeyUsage).toEqual([OID.serverAuth, OID.clientAuth]);
    expect(leaf.authorityKeyId).toBe(zone.certificate.subjectKeyId);
    const backdate = before - leaf.notBefore.getTime();
    expect(backdate).toBeGreaterThanOrEqual(59_000);
    expect(backdate).toBeLessThanOrEqual(62_000);
    expect(Math.abs(leaf.notAfter.getTime() - before - DAY)).toBeLessThan(3_000);
    expect(leaf.serialHex.length).toBe(32);
    expect(issued.trustBundlePem).toBe(root.bundle.toPem());
  });

  it('a root signing leaves directly hands out the leaf alone (the chain stops before the root)', async () => {
    const root = await createRootCa({ trustDomain: 'example.org' });
    expect(parseCertificatesPem((await root.issueWorkload(ID)).certChainPem, 'x')).toHaveLength(1);
  });

  it('clamps a leaf to its issuer and refuses a TTL beyond the maximum', async () => {
    const root = await createRootCa({ trustDomain: 'example.org' });
    const zone = await root.createIntermediate({ name: 'zone-a', ttlMs: 2 * HOUR });
    const leaf = await zone.issueWorkload(ID, { ttlMs: 10 * HOUR });
    expect(leaf.notAfter.getTime()).toBe(zone.notAfter.getTime());
    const err = await refusalOf(zone.issueWorkload(ID, { ttlMs: DEFAULT_MAX_WORKLOAD_TTL_MS + 1_000 }));
    expect(err.code).toBe('TRELLIS_CA_TTL_TOO_LONG');
    expect(err.message).toMatch(/exceeds this CA's maximum of 30d/);
    const strict = await root.createIntermediate({ name: 'strict', maxTtlMs: HOUR });
    expect((await refusalOf(strict.issueWorkload(ID, { ttlMs: 2 * HOUR }))).code).toBe('TRELLIS_CA_TTL_TOO_LONG');
    expect(strict.defaultTtlMs).toBe(HOUR);
  });

  it('refuses to sign when the issuer has expired or is not yet valid', async () => {
    let clock = new Date();
    const root = await createRootCa({ trustDomain: 'example.org', ttlMs: DAY, now: () => clock });
    const csr = await createCsr(await generateWorkloadKey(), ID);
    clock = new Date(Date.now() + 2 * DAY);
    const expired = await refusalOf(root.signCsr(csr, ID));
    expect(expired.code).toBe('TRELLIS_CA_ISSUER_EXPIRED');
    expect(expired.side).toBe('input');
    clock = new Date(Date.now() - HOUR);
    expect((await refusalOf(root.signCsr(csr, ID))).code).toBe('TRELLIS_CA_ISSUER_NOT_YET_VALID');
    expect((await refusalOf(root.createIntermediate({ name: 'x' }))).code).toBe('TRELLIS_CA_ISSUER_NOT_YET_VALID');
  });
});

describe('CA directories and plug-in CAs', () => {
  let root: CertificateAuthority;
  beforeAll(async () => {
    root = await createRootCa({ trustDomain: 'example.org' });
  });

  it('saves ca.crt, ca.key (0600) and bundle.pem, loads them back, refuses to overwrite', async () => {
    const dir = join(tempDir(), 'root');
    await root.save(dir);
    expect(statSync(join(dir, 'ca.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'bundle.pem'), 'utf8')).toBe(root.bundle.toPem());
    const loaded = await CertificateAuthority.load(dir);
    expect(loaded.trustDomain).toBe('example.org');
    expect(loaded.certificate.der.equals(root.certificate.der)).toBe(true);
    const before = readFileSync(join(dir, 'ca.key'), 'utf8');
    expect((await refusalOf((await createRootCa({ trustDomain: 'example.org' })).save(dir))).code).toBe('TRELLIS_CA_EXISTS');
    expect(readFileSync(join(dir, 'ca.key'), 'utf8')).toBe(before);
  });

  it('loads an intermediate directory whose leaves chain to the root', async () => {
    const dir = join(tempDir(), 'zone');
    await (await root.createIntermediate({ name: 'zone-a' })).save(dir);
    const zone = await CertificateAuthority.load(dir);
    expect(zone.isRoot).toBe(false);
    expect(parseCertificatesPem((await zone.issueWorkload(ID)).certChainPem, 'x')).toHaveLength(2);
  });

  it('refuses a key that does not match, a leaf as CA, an expired CA, and a key readable by others', async () => {
    const other = await createRootCa({ trustDomain: 'example.org' });
    const mismatch = await refusalOf(Promise.resolve().then(() => CertificateAuthority.fromPem({ certChainPem: root.certChainPem, keyPem: other.exportKeyPem(), trustDomain: 'example.org' })));
    expect(mismatch.code).toBe('TRELLIS_CA_KEY_MISMATCH');

    const leaf = await root.issueWorkload(ID);
    const notCa = await refusalOf(Promise.resolve().then(() => CertificateAuthority.fromPem({ certChainPem: leaf.certChainPem, keyPem: leaf.keyPem, bundlePem: root.bundle.toPem(), trustDomain: 'example.org' })));
    expect(notCa.code).toBe('TRELLIS_CA_NOT_A_CA');

    const dir = join(tempDir(), 'root');
    await root.save(dir);
    const expired = await refusalOf(CertificateAuthority.load(dir, { now: () => new Date(Date.now() + 11 * 365 * DAY) }));
    expect(expired.code).toBe('TRELLIS_CA_ISSUER_EXPIRED');

    chmodSync(join(dir, 'ca.key'), 0o644);
    expect((await refusalOf(CertificateAuthority.load(dir))).code).toBe('TRELLIS_CA_KEY_PERMISSIONS');
  });

  it('takes a plug-in CA whose chain ends in its root: the root goes to the bundle, the rest to the chain', async () => {
    const zone = await root.createIntermediate({ name: 'zone-a' });
    const plug = CertificateAuthority.fromPem({ certChainPem: zone.certChainPem + root.certificatePem, keyPem: zone.exportKeyPem(), trustDomain: 'example.org' });
    expect(plug.bundle.toPem()).toBe(root.bundle.toPem());
    expect(plug.chain).toHaveLength(0);
    expect(parseCertificatesPem((await plug.issueWorkload(ID)).certChainPem, 'x')).toHaveLength(2);
    // Without the root anywhere, nothing anchors the chain.
    const err = await refusalOf(Promise.resolve().then(() => CertificateAuthority.fromPem({ certChainPem: zone.certChainPem, keyPem: zone.exportKeyPem(), trustDomain: 'example.org' })));
    expect(err.code).toBe('TRELLIS_BUNDLE_EMPTY');
  });

  it('refuses garbage PEM in a CA directory', async () => {
    const dir = join(tempDir(), 'root');
    await root.save(dir);
    writeFileSync(join(dir, 'ca.crt'), 'not a certificate\n');
    const err = await refusalOf(CertificateAuthority.load(dir));
    expect(err.code).toBe('TRELLIS_PEM_INVALID');
    expect(existsSync(join(dir, 'ca.key'))).toBe(true);
  });

  it('refuses an intermediate whose chain does not reach the bundle (another mesh root)', async () => {
    const zone = await root.createIntermediate({ name: 'zone-a' });
    const stranger = await createRootCa({ trustDomain: 'example.org' });
    const err = await refusalOf(Promise.resolve().then(() => zone.withBundle(stranger.bundle)));
    expect(err.code).toBe('TRELLIS_CA_CHAIN_INVALID');
  });
});

describe('CA metrics', () => {
  it('counts issued certificates and failures by reason, times issuance, and reports seconds to expiry', async () => {
    const registry = new Registry();
    const metrics = new CaMetrics(registry);
    const root = await createRootCa({ trustDomain: 'example.org', ttlMs: 10 * DAY, metrics, metricsName: 'root' });
    const zone = await root.createIntermediate({ name: 'zone-a', ttlMs: 5 * DAY });
    await zone.signCsr(await createCsr(await generateWorkloadKey(), ID), ID);
    await zone.issueWorkload(ID);
    await zone.signCsr('garbage', ID).catch(() => undefined);
    await zone.issueWorkload(ID, { ttlMs: 365 * DAY }).catch(() => undefined);
    const text = await registry.metrics();
    expect(text).toMatch(/trellis_ca_certificates_issued_total\{kind="workload"\} 2/);
    expect(text).toMatch(/trellis_ca_certificates_issued_total\{kind="intermediate"\} 1/);
    expect(text).toMatch(/trellis_ca_issuance_failures_total\{reason="ca_csr_invalid"\} 1/);
    expect(text).toMatch(/trellis_ca_issuance_failures_total\{reason="ca_ttl_too_long"\} 1/);
    expect(text).toMatch(/trellis_ca_issuance_duration_seconds_count\{kind="workload"\} 2/);
    const zoneExpiry = Number(/trellis_ca_certificate_expiry_seconds\{ca="zone-a"\} ([\d.]+)/.exec(text)?.[1]);
    expect(Math.abs(zoneExpiry - 5 * 86_400)).toBeLessThan(10);
    const rootExpiry = Number(/trellis_ca_certificate_expiry_seconds\{ca="root"\} ([\d.]+)/.exec(text)?.[1]);
    expect(Math.abs(rootExpiry - 10 * 86_400)).toBeLessThan(10);
  });
});

describe('CA expiry on a fake clock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('the expiry gauge counts down, and the CA stops signing once it has expired', async () => {
    // Only Date is faked: key generation completes on libuv's real thread pool.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    const registry = new Registry();
    const root = await createRootCa({ trustDomain: 'example.org', ttlMs: 3 * DAY, metrics: new CaMetrics(registry), metricsName: 'root' });
    const csr = await createCsr(await generateWorkloadKey(), ID);
    const expiry = async (): Promise<number> => Number(/trellis_ca_certificate_expiry_seconds\{ca="root"\} (-?[\d.e+]+)/.exec(await registry.metrics())?.[1]);
    expect(await expiry()).toBe(3 * 86_400);

    vi.setSystemTime(new Date('2030-01-03T00:00:00Z'));
    expect(await expiry()).toBe(86_400);
    // A day before expiry, a 24 h leaf is cut short at the CA's own NotAfter.
    const late = await root.signCsr(csr, ID, { ttlMs: 2 * DAY });
    expect(late.notAfter.toISOString()).toBe(root.notAfter.toISOString());

    vi.setSystemTime(new Date('2030-01-05T00:00:00Z'));
    expect(await expiry()).toBeLessThan(0);
    await expect(root.signCsr(csr, ID)).rejects.toMatchObject({ code: 'TRELLIS_CA_ISSUER_EXPIRED' });
    expect(await registry.metrics()).toMatch(/trellis_ca_issuance_failures_total\{reason="ca_issuer_expired"\} 1/);
  });
});
