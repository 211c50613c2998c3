/**
 * What `trellis ca inspect` reports about a PEM file: for each certificate its subject, SPIFFE ID, issuer,
 * validity and time left, key type and fingerprint, and every problem found (expired, not yet valid, not a
 * valid X.509-SVID, a CA used as a leaf or a leaf used as a CA, a chain that does not reach the bundle).
 * A library function so the control plane's admin endpoint can show the same view of its certificates.
 */
import { createPublicKey, X509Certificate as NodeX509Certificate } from 'node:crypto';
import { formatDuration } from '../common/duration.js';
import { fingerprintSha256, parseCertificatesPem, type ParsedCertificate } from './certificate.js';
import { describeKey } from './keys.js';
import { parseSpiffeId } from './spiffe-id.js';
import { checkLeaf, verifyChain } from './verify.js';
import type { TrustBundle } from './bundle.js';

export interface CertificateSummary {
  readonly kind: 'leaf' | 'ca';
  readonly subject: string;
  readonly issuer: string;
  readonly spiffeIds: readonly string[];
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** Negative once expired. */
  readonly timeLeftMs: number;
  readonly keyType: string;
  readonly fingerprintSha256: string;
  readonly pathLen: number | undefined;
  readonly keyUsage: readonly string[];
  readonly selfSigned: boolean;
  readonly problems: readonly string[];
}

export interface InspectionReport {
  readonly certificates: readonly CertificateSummary[];
  /** Set when a bundle was given: the outcome of full chain verification. */
  readonly chain: { readonly verified: boolean; readonly detail: string } | undefined;
  /** Every problem of every certificate and of the chain; empty when all is well. */
  readonly problems: readonly string[];
}

export interface InspectOptions {
  readonly now?: Date;
  readonly bundle?: TrustBundle;
}

function summarise(cert: ParsedCertificate, index: number, now: Date): CertificateSummary {
  const node = new NodeX509Certificate(cert.der);
  const isCa = cert.basicConstraints?.ca === true;
  const spiffeIds = (cert.subjectAltNames?.uris ?? []).filter((u) => u.startsWith('spiffe://'));
  const problems: string[] = [];
  if (now < cert.notBefore) problems.push(`not yet valid (starts in ${formatDuration(cert.notBefore.getTime() - now.getTime())})`);
  if (now > cert.notAfter) problems.push(`expired ${formatDuration(now.getTime() - cert.notAfter.getTime())} ago`);
  if (index === 0 && !isCa) {
    const trustDomain = trustDomainOfUri(spiffeIds[0]);
    try {
      checkLeaf(cert, { trustDomain: trustDomain ?? '', now: new Date(Math.min(Math.max(now.getTime(), cert.notBefore.getTime()), cert.notAfter.getTime())) });
    } catch (err) {
      problems.push(`not a valid X.509-SVID: ${(err as Error).message}`);
    }
  }
  if (isCa && spiffeIds.some((id) => trustDomainOfUri(id) !== undefined && parseSpiffeId(id).path !== '')) {
    problems.push('CA used as leaf: a CA certificate carries a workload SPIFFE ID');
  }
  if (index > 0 && !isCa) problems.push('leaf used as CA: a certificate that is not a CA appears as an issuer in the chain');
  if (cert.unknownCritical.length > 0) problems.push(`unknown critical extensions: ${cert.unknownCritical.join(', ')}`);
  return Object.freeze({
    kind: isCa ? 'ca' : 'leaf',
    // node:crypto reports an empty subject as undefined, despite its type.
    subject: oneLine(node.subject) || '(empty)',
    issuer: oneLine(node.issuer) || '(empty)',
    spiffeIds,
    serial: cert.serialHex,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    timeLeftMs: cert.notAfter.getTime() - now.getTime(),
    keyType: describeKey(createPublicKey({ key: cert.spki, format: 'der', type: 'spki' })),
    fingerprintSha256: fingerprintSha256(cert.der),
    pathLen: cert.basicConstraints?.pathLen,
    keyUsage: [...(cert.keyUsage?.usages ?? [])],
    selfSigned: cert.subjectName.equals(cert.issuerName),
    problems,
  });
}

function oneLine(name: string | undefined): string {
  return (name ?? '').replace(/\n/g, ', ');
}

function trustDomainOfUri(uri: string | undefined): string | undefined {
  if (uri === undefined) return undefined;
  try {
    return parseSpiffeId(uri).trustDomain;
  } catch {
    return undefined;
  }
}

/** Throws an InputError only when `pem` holds no readable certificate; everything else is a reported problem. */
export function inspectCertificates(pem: string, options: InspectOptions = {}): InspectionReport {
  const now = options.now ?? new Date();
  const certs = parseCertificatesPem(pem, 'file');
  const certificates = certs.map((cert, index) => summarise(cert, index, now));
  const problems = certificates.flatMap((c, i) => c.problems.map((p) => `certificate ${i + 1}: ${p}`));
  let chain: InspectionReport['chain'];
  const first = certs[0];
  if (options.bundle !== undefined && first !== undefined && first.basicConstraints?.ca !== true) {
    try {
      const verified = verifyChain(pem, options.bundle, { now });
      const root = verified.path[verified.path.length - 1] as ParsedCertificate;
      chain = { verified: true, detail: `chains to root ${oneLine(new NodeX509Certificate(root.der).subject)} of the ${options.bundle.trustDomain} bundle` };
    } catch (err) {
      chain = { verified: false, detail: (err as Error).message };
      problems.push(`chain: ${chain.detail}`);
    }
  }
  return Object.freeze({ certificates, chain, problems });
}

/** The report as the lines `trellis ca inspect` prints. */
export function formatInspection(report: InspectionReport): string {
  const lines: string[] = [];
  report.certificates.forEach((c, i) => {
    const role = i === 0 ? (c.kind === 'ca' ? 'CA certificate' : 'leaf') : c.selfSigned ? 'root' : 'issuer';
    lines.push(`Certificate ${i + 1} (${role})`);
    lines.push(`  subject:      ${c.subject}`);
    if (c.spiffeIds.length > 0) lines.push(`  SPIFFE ID:    ${c.spiffeIds.join(', ')}`);
    lines.push(`  issuer:       ${c.issuer}${c.selfSigned ? ' (self-signed)' : ''}`);
    lines.push(`  serial:       ${c.serial}`);
    const left = c.timeLeftMs >= 0 ? `${formatDuration(c.timeLeftMs)} left` : `expired ${formatDuration(-c.timeLeftMs)} ago`;
    lines.push(`  valid:        ${c.notBefore} to ${c.notAfter} (${left})`);
    lines.push(`  key:          ${c.keyType}`);
    lines.push(`  CA:           ${c.kind === 'ca' ? `yes${c.pathLen === undefined ? '' : `, pathLen ${c.pathLen}`}` : 'no'}`);
    lines.push(`  key usage:    ${c.keyUsage.join(', ') || '(none)'}`);
    lines.push(`  SHA-256:      ${c.fingerprintSha256}`);
    for (const p of c.problems) lines.push(`  PROBLEM:      ${p}`);
  });
  if (report.chain !== undefined) lines.push(`Chain: ${report.chain.verified ? 'verified, ' : 'NOT verified: '}${report.chain.detail}`);
  lines.push(report.problems.length === 0 ? 'No problems found.' : `${report.problems.length} problem(s) found.`);
  return `${lines.join('\n')}\n`;
}
