/**
 * Under CNI capture nothing in the pod installs the redirect: the node's CNI plugin does, while the pod's
 * network is set up. A pod that started before the plugin was in place has no rules, and its traffic
 * would bypass the sidecar. The agent therefore holds readiness until it has seen a redirect work, and
 * says why while it waits (the node agent's repair re-creates such pods).
 *
 * The test needs no privilege (the sidecar has none): the proxy's own connections to the pod's address
 * over `lo` are sent to the inbound capture port by the rules (capture/rules.ts, OUTPUT rule 3). So a
 * connection to `address:probePort`, a port nothing in the pod listens on, is accepted when the rules
 * exist (by the agent's own inbound listener) and refused when they do not. Once confirmed, the check
 * stops: rules do not disappear from a running pod's namespace.
 */
import { connect } from 'node:net';

/** A port nothing in a meshed pod listens on; reserved beside the agent's other 150xx ports. */
export const REDIRECT_PROBE_PORT = 15099;

export interface RedirectCheckOptions {
  /** The pod's own address (not loopback: loopback is never captured). */
  readonly address: string;
  readonly probePort?: number;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
}

export class RedirectCheck {
  private confirmed = false;
  private lastProblem = 'not checked yet';
  private timer: NodeJS.Timeout | undefined;
  private readonly probePort: number;

  constructor(private readonly options: RedirectCheckOptions) {
    this.probePort = options.probePort ?? REDIRECT_PROBE_PORT;
  }

  /** The not-ready reason, or null once a redirected connection was seen. */
  reason(): string | null {
    if (this.confirmed) return null;
    return `the traffic redirect is not in place in this pod (${this.lastProblem}): the Trellis CNI plugin has not set up this pod's network namespace; the trellis-cni node agent re-creates pods that started without it (kubectl -n trellis-cni logs ds/trellis-cni)`;
  }

  start(): void {
    const tick = (): void => {
      void this.probe().then((ok) => {
        if (ok) {
          this.confirmed = true;
          return;
        }
        this.timer = setTimeout(tick, this.options.intervalMs ?? 1_000);
        this.timer.unref();
      });
    };
    tick();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One attempt; resolves true when the connection was accepted (redirected). */
  probe(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect({ host: this.options.address, port: this.probePort });
      const finish = (ok: boolean, problem: string): void => {
        clearTimeout(timer);
        socket.destroy();
        if (!ok) this.lastProblem = problem;
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false, `no answer from ${this.options.address}:${this.probePort} within ${this.options.timeoutMs ?? 2_000} ms`), this.options.timeoutMs ?? 2_000);
      socket.once('connect', () => finish(true, ''));
      socket.once('error', (err: NodeJS.ErrnoException) => finish(false, `a connection to ${this.options.address}:${this.probePort} was ${err.code === 'ECONNREFUSED' ? 'refused, not redirected to the inbound capture port' : `not redirected (${err.code ?? err.message})`}`));
    });
  }
}
