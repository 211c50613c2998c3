/**
 * What `trellis check` reports: findings, each ok, a warning or a failure, with the fix for anything not
 * ok, and the certificate checks both the VM and the Kubernetes side use (parse, validity window, days
 * left against a warning margin).
 */
import { X509Certificate } from 'node:crypto';

export type Severity = 'ok' | 'warn' | 'fail';

export interface Finding {
  readonly check: string;
  readonly severity: Severity;
  readonly detail: string;
  /** What to do; present on every warn and fail. */
  readonly fix?: string;
}

export const ok = (check: string, detail: string): Finding => ({ check, severity: 'ok', detail });
export const warn = (check: string, detail: string, fix: string): Finding => ({ check, severity: 'warn', detail, fix });
export const fail = (check: string, detail: string, fix: string): Finding => ({ check, severity: 'fail', detail, fix });

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function splitPem(pem: string): string[] {
  return pem.match(PEM_BLOCK) ?? [];
}

const DAY_MS = 86_400_000;

/** One finding per certificate of `pem`: expired or not yet valid fail, within `warnDays` warns. */
export function certificateFindings(check: string, pem: string, now: Date, warnDays: number, renew: string): Finding[] {
  const blocks = splitPem(pem);
  if (blocks.length === 0) return [fail(check, 'holds no PEM certificate', renew)];
  return blocks.map((block, i) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (err) {
      return fail(check, `certificate ${i + 1} does not parse: ${(err as Error).message}`, renew);
    }
    const subject = cert.subject.replace(/\n/g, ', ') || cert.subjectAltName || `certificate ${i + 1}`;
    const notAfter = new Date(cert.validTo);
    const notBefore = new Date(cert.validFrom);
    const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
    if (now < notBefore) return fail(check, `${subject} is not valid before ${notBefore.toISOString()}`, 'check the clock of this machine and of the issuer');
    if (now >= notAfter) return fail(check, `${subject} expired on ${notAfter.toISOString()}`, renew);
    if (daysLeft < warnDays) return warn(check, `${subject} expires in ${daysLeft} days (${notAfter.toISOString()})`, renew);
    return ok(check, `${subject} valid until ${notAfter.toISOString()} (${daysLeft} days)`);
  });
}

const MARK: Readonly<Record<Severity, string>> = { ok: '√', warn: '!', fail: '×' };

export function formatFindings(findings: readonly Finding[]): string {
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${MARK[f.severity]} ${f.check}: ${f.detail}`);
    if (f.fix !== undefined && f.severity !== 'ok') lines.push(`    fix: ${f.fix}`);
  }
  const failed = findings.filter((f) => f.severity === 'fail').length;
  const warned = findings.filter((f) => f.severity === 'warn').length;
  lines.push('', failed === 0 ? `Status check results are √ (${warned} warning${warned === 1 ? '' : 's'})` : `Status check results are × (${failed} failed, ${warned} warning${warned === 1 ? '' : 's'})`);
  return `${lines.join('\n')}\n`;
}
