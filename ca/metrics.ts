/**
 * CA metrics on a Registry the caller passes in (never prom-client's global one, so tests and the demo can
 * run several control planes in one process). One CaMetrics per registry; several CAs may share it.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type IssuedKind = 'workload' | 'intermediate';

export class CaMetrics {
  private readonly issued: Counter<'kind'>;
  private readonly failures: Counter<'reason'>;
  private readonly latency: Histogram<'kind'>;
  private readonly expiry: Gauge<'ca'>;
  private readonly expiries = new Map<string, Date>();

  constructor(registry: Registry, private readonly now: () => Date = () => new Date()) {
    this.issued = new Counter({ name: 'trellis_ca_certificates_issued_total', help: 'Certificates signed by this CA', labelNames: ['kind'], registers: [registry] });
    this.failures = new Counter({
      name: 'trellis_ca_issuance_failures_total',
      help: 'Signing requests refused or failed, by reason (the error code without its TRELLIS_ prefix)',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: 'trellis_ca_issuance_duration_seconds',
      help: 'Time to check a request and sign one certificate',
      labelNames: ['kind'],
      // Signing takes well under a millisecond; the upper buckets catch a starved event loop.
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [registry],
    });
    const expiries = this.expiries;
    const clock = this.now;
    this.expiry = new Gauge({
      name: 'trellis_ca_certificate_expiry_seconds',
      help: "Seconds until the signing CA's own certificate expires (negative once expired)",
      labelNames: ['ca'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [ca, notAfter] of expiries) this.set({ ca }, (notAfter.getTime() - clock().getTime()) / 1000);
      },
    });
  }

  /** Reports the expiry of a signing CA, under a label naming it (e.g. "zone-a"). */
  trackCa(name: string, notAfter: Date): void {
    this.expiries.set(name, notAfter);
  }

  untrackCa(name: string): void {
    this.expiries.delete(name);
  }

  recordIssued(kind: IssuedKind, seconds: number): void {
    this.issued.inc({ kind });
    this.latency.observe({ kind }, seconds);
  }

  recordFailure(code: string): void {
    this.failures.inc({ reason: code.replace(/^TRELLIS_/, '').toLowerCase() });
  }
}
