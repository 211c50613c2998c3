/**
 * The certificates of revoked join tokens, as the watch hub hands them to agents. Re-read from the token
 * records when the API revokes a token and every `revocationRefreshMs` (revocations made offline with
 * `trellis token revoke --data-dir`, and entries that reached their notAfter and leave the list); a change
 * is pushed to every agent, an unchanged list is not.
 */
import type { RevokedSerial } from '../api/control-protocol.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { TokenService } from './token-service.js';

export class RevocationList {
  private current: readonly RevokedSerial[];
  private key: string;
  private timer: NodeJS.Timeout | undefined;
  /** Told when the list changed (the hub pushes it); set once the hub exists. */
  onChange: () => void = () => undefined;

  private constructor(
    private readonly tokens: Pick<TokenService, 'revokedSerials'>,
    private readonly log: Logger,
    initial: readonly RevokedSerial[],
  ) {
    this.current = initial;
    this.key = JSON.stringify(initial);
  }

  static async load(tokens: Pick<TokenService, 'revokedSerials'>, log: Logger): Promise<RevocationList> {
    return new RevocationList(tokens, log, await tokens.revokedSerials());
  }

  get list(): readonly RevokedSerial[] {
    return this.current;
  }

  /** Re-reads the records now; a failure is logged (the next refresh tries again). */
  readonly refresh = (): void => {
    void this.reload().catch((err: unknown) => this.log.error({ err: describeError(err) }, 'cannot read the join-token records for revocations'));
  };

  start(intervalMs: number): void {
    this.timer = setInterval(this.refresh, intervalMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async reload(): Promise<void> {
    const next = await this.tokens.revokedSerials();
    const key = JSON.stringify(next);
    if (key === this.key) return;
    this.current = next;
    this.key = key;
    this.log.info({ revokedCertificates: next.length }, 'revoked certificate list changed; pushing it to agents');
    this.onChange();
  }
}
