/**
 * The timers of one outbound request under traffic management: the request timeout (the whole exchange,
 * retries included; never for upgrades, which have idle timeouts), and one timer per try that is in turn
 * the connect timeout (until a lane is attached), the per-try timeout (until the response head), or the
 * backoff before the next try. Owned by one exchange and reused for each of its requests.
 */
export class TryTimers {
  private request: NodeJS.Timeout | undefined;
  private attempt: NodeJS.Timeout | undefined;

  startRequest(ms: number, onTimeout: () => void): void {
    this.clearRequest();
    this.request = setTimeout(onTimeout, ms);
  }

  /** Replaces the try's timer (connect → per-try → backoff); `ms` undefined just stops it. */
  startTry(ms: number | undefined, onTimeout: () => void): void {
    this.clearTry();
    if (ms !== undefined) this.attempt = setTimeout(onTimeout, ms);
  }

  clearTry(): void {
    if (this.attempt !== undefined) clearTimeout(this.attempt);
    this.attempt = undefined;
  }

  /** Stops the request timeout (a gRPC call whose response began is a stream: from then on only idle timeouts). */
  clearRequest(): void {
    if (this.request !== undefined) clearTimeout(this.request);
    this.request = undefined;
  }

  clear(): void {
    this.clearTry();
    this.clearRequest();
  }
}
