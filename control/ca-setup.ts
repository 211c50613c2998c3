/**
 * The control plane's CAs: the mesh root (made on first start, or the operator's from `--ca-dir`, as
 * `trellis ca init` writes it) and this zone's intermediate, which signs every workload certificate of
 * the zone. An operator CA that may not sign CAs (pathLen 0) signs workloads itself.
 *
 *   <data-dir>/ca/root.pem, root.key (0600)    only when this control plane made the root
 *   <data-dir>/ca/zone-<zone>.pem, .key (0600)  the zone intermediate (its chain up to, not incl., the root)
 *   <data-dir>/trust-bundle.pem                 the roots, for agents' `--ca-file`
 *
 * With `--ca-dir`, the trust bundle is the directory's `bundle.pem` (several roots during a rotation),
 * and a zone intermediate that the operator's current CA did not issue (the CA was switched to one under
 * a new root) is retired (renamed `*.retired-<ms>`, never deleted) and a new one made: otherwise the zone
 * would go on issuing under the old root, which the two-root bundle still accepts.
 */
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { removeOrphanedTempFiles, writeFileAtomic, readFileIfExists } from '../common/atomic-file.js';
import { isTrellisError, TrellisError } from '../common/errors.js';
import { CertificateAuthority, createRootCa } from '../ca/authority.js';
import { storeCorrupt } from './file-store.js';
import { CODE } from '../common/error-codes.js';

export interface ZoneCas {
  readonly root: CertificateAuthority | undefined;
  readonly zone: CertificateAuthority;
  readonly trustBundlePem: string;
  /** Where the previous zone intermediate went, when the operator's CA changed and a new one was made. */
  readonly retiredZoneCert?: string;
}

async function loadPair(certPath: string, keyPath: string, trustDomain: string, bundlePem: string | undefined): Promise<CertificateAuthority | undefined> {
  const cert = await readFileIfExists(certPath);
  const key = await readFileIfExists(keyPath);
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) throw storeCorrupt(cert === undefined ? certPath : keyPath, `missing, while ${cert === undefined ? keyPath : certPath} exists`);
  try {
    return CertificateAuthority.fromPem({ certChainPem: cert, keyPem: key, trustDomain, ...(bundlePem === undefined ? {} : { bundlePem }) });
  } catch (err) {
    const reason = isTrellisError(err) ? err.message : String(err);
    throw storeCorrupt(`${certPath} (with ${keyPath})`, reason);
  }
}

async function savePair(ca: CertificateAuthority, certPath: string, keyPath: string): Promise<void> {
  // Key first: a crash between the two leaves a key without a certificate, which loadPair reports.
  await writeFileAtomic(keyPath, ca.exportKeyPem(), { mode: 0o600, exclusive: true });
  await writeFileAtomic(certPath, ca.certChainPem, { exclusive: true });
}

/** The operator's CA, from a directory as `trellis ca init` writes it (ca.crt, ca.key, bundle.pem). */
async function loadOperatorCa(caDir: string, trustDomain: string): Promise<CertificateAuthority> {
  let ca: CertificateAuthority;
  try {
    ca = await CertificateAuthority.load(caDir, { defaultTrustDomain: trustDomain });
  } catch (err) {
    throw new TrellisError(CODE.CONTROL_CA_UNUSABLE, `--ca-dir ${caDir}: ${isTrellisError(err) ? err.message : String(err)}`, { side: 'input', cause: err });
  }
  if (ca.trustDomain !== trustDomain) {
    throw new TrellisError(CODE.CONTROL_CA_UNUSABLE, `--ca-dir ${caDir} is a CA of trust domain "${ca.trustDomain}", this control plane serves "${trustDomain}"`, { side: 'input' });
  }
  return ca;
}

/** Whether `ca` was signed by `issuer` (names and signature), i.e. is still below the operator's current CA. */
function issuedBy(ca: CertificateAuthority, issuer: CertificateAuthority): boolean {
  const subject = new X509Certificate(ca.certificate.der);
  const parent = new X509Certificate(issuer.certificate.der);
  return subject.checkIssued(parent) && subject.verify(parent.publicKey);
}

/** Moves a zone intermediate aside (kept for the record, never deleted) so a new one can be made. */
async function retirePair(certPath: string, keyPath: string): Promise<string> {
  const suffix = `.retired-${Date.now()}`;
  await fs.rename(keyPath, `${keyPath}${suffix}`);
  await fs.rename(certPath, `${certPath}${suffix}`);
  return `${certPath}${suffix}`;
}

/** Whether a CA may sign another CA below it (a root, or an intermediate with pathLen ≥ 1 or none). */
function canSignCa(ca: CertificateAuthority): boolean {
  const pathLen = ca.certificate.basicConstraints?.pathLen;
  return pathLen === undefined || pathLen >= 1;
}

export async function setUpZoneCas(options: { dataDir: string; caDir: string | undefined; trustDomain: string; zone: string }): Promise<ZoneCas> {
  const dir = join(options.dataDir, 'ca');
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // A crash while a CA key was being written leaves its temporary copy (mode 0600) behind: remove it.
  await removeOrphanedTempFiles(dir);
  const zoneCert = join(dir, `zone-${options.zone}.pem`);
  const zoneKey = join(dir, `zone-${options.zone}.key`);
  let root: CertificateAuthority | undefined;
  if (options.caDir !== undefined) {
    root = await loadOperatorCa(options.caDir, options.trustDomain);
    // A plug-in CA that may not sign CAs (pathLen 0) signs the zone's workloads itself.
    if (!canSignCa(root)) {
      await writeFileAtomic(join(options.dataDir, 'trust-bundle.pem'), root.bundle.toPem());
      return { root, zone: root, trustBundlePem: root.bundle.toPem() };
    }
  } else {
    root = await loadPair(join(dir, 'root.pem'), join(dir, 'root.key'), options.trustDomain, undefined);
    if (root === undefined) {
      root = await createRootCa({ trustDomain: options.trustDomain });
      await savePair(root, join(dir, 'root.pem'), join(dir, 'root.key'));
    }
  }
  const bundlePem = root.bundle.toPem();
  let zone = await loadPair(zoneCert, zoneKey, options.trustDomain, bundlePem);
  let retiredZoneCert: string | undefined;
  if (zone !== undefined && !issuedBy(zone, root)) {
    retiredZoneCert = await retirePair(zoneCert, zoneKey);
    zone = undefined;
  }
  if (zone === undefined) {
    // It names its zone, so peers learn a caller's zone from its certificate (ca/zone.ts).
    zone = await root.createIntermediate({ name: `Trellis zone ${options.zone}`.slice(0, 64), zone: options.zone });
    await savePair(zone, zoneCert, zoneKey);
  }
  await writeFileAtomic(join(options.dataDir, 'trust-bundle.pem'), bundlePem);
  return { root, zone, trustBundlePem: bundlePem, ...(retiredZoneCert === undefined ? {} : { retiredZoneCert }) };
}
