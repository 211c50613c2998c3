/**
 * The control plane's own serving certificate (the API's TLS identity, `<root-namespace>/trellis-control`)
 * has a workload's lifetime: it is renewed at half-life, like an agent's, and swapped into the listener
 * without a restart. A failed renewal is retried every minute while the old certificate still serves.
 */
import { CONTROL_PLANE_SERVICE } from '../api/control-protocol.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { IdentityIssuer } from './identity-issuer.js';

export interface ServingCertificate {
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly notAfter: Date;
}

const RETRY_MS = 60_000;
/** Never sooner than this, whatever the lifetime (a certificate issued already past half-life). */
const MIN_DELAY_MS = 1_000;

export class ServingRenewal {
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly issuer: Pick<IdentityIssuer, 'serving'>,
    private readonly rootNamespace: string,
    private readonly log: Logger,
    /** The certificate in force. */
    public current: ServingCertificate,
  ) {}

  static async issue(issuer: Pick<IdentityIssuer, 'serving'>, rootNamespace: string, log: Logger): Promise<ServingRenewal> {
    return new ServingRenewal(issuer, rootNamespace, log, await issuer.serving(rootNamespace, CONTROL_PLANE_SERVICE));
  }

  /** Schedules renewals; `onRenewed` puts the new certificate in the listener. */
  start(onRenewed: () => void): void {
    this.timer = this.renewAt(this.current.notAfter, onRenewed);
  }

  close(): void {
    clearTimeout(this.timer);
  }

  private renewAt(notAfter: Date, onRenewed: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      void this.issuer.serving(this.rootNamespace, CONTROL_PLANE_SERVICE).then(
        (next) => {
          this.current = next;
          onRenewed();
          this.timer = this.renewAt(next.notAfter, onRenewed);
          this.log.info({ notAfter: next.notAfter.toISOString() }, 'control plane serving certificate renewed');
        },
        (err: unknown) => {
          this.log.error({ err: describeError(err) }, 'cannot renew the serving certificate; retrying in 1 minute');
          this.timer = setTimeout(() => (this.timer = this.renewAt(notAfter, onRenewed)), RETRY_MS);
        },
      );
    }, Math.max(MIN_DELAY_MS, (notAfter.getTime() - Date.now()) / 2));
    timer.unref();
    return timer;
  }
}
