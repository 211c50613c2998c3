/**
 * Health of the app beside the agent: a TCP connect to its port, or an HTTP GET of a path (2xx/3xx is
 * healthy). Two failures in a row make it unhealthy (one lost SYN should not empty a service), one success
 * makes it healthy again. Each probe has its own timeout, shorter than the interval, so probes never pile up.
 */
import { connect } from 'node:net';
import { request } from 'node:http';

export interface HealthCheckSpec {
  readonly kind: 'tcp' | 'http';
  readonly host: string;
  readonly port: number;
  /** For `http`: the path to GET. */
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyAfter: number;
  /**
   * Dial from this address (transparent capture, app off loopback: the hand-off source the rules exempt,
   * proxy/inbound/app-source.ts); absent: the kernel's choice.
   */
  readonly localAddress?: string;
}

export interface HealthResult {
  readonly healthy: boolean;
  readonly detail: string;
}

export function probeOnce(spec: HealthCheckSpec): Promise<HealthResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: HealthResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const timer = setTimeout(() => {
      cleanup();
      finish({ healthy: false, detail: `${spec.kind} check of ${spec.host}:${spec.port} timed out after ${spec.timeoutMs} ms` });
    }, spec.timeoutMs);
    let cleanup: () => void;
    if (spec.kind === 'tcp') {
      const socket = connect({ host: spec.host, port: spec.port, ...(spec.localAddress === undefined ? {} : { localAddress: spec.localAddress }) });
      cleanup = () => socket.destroy();
      socket.once('connect', () => {
        socket.destroy();
        finish({ healthy: true, detail: `tcp connect to ${spec.host}:${spec.port} ok` });
      });
      socket.once('error', (err) => finish({ healthy: false, detail: `tcp connect to ${spec.host}:${spec.port}: ${err.message}` }));
    } else {
      const req = request({ host: spec.host, port: spec.port, localAddress: spec.localAddress, path: spec.path, method: 'GET', agent: false, headers: { 'user-agent': 'trellis-agent-health' } }, (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        finish({ healthy: status >= 200 && status < 400, detail: `GET ${spec.path} → ${status}` });
      });
      cleanup = () => req.destroy();
      req.once('error', (err) => finish({ healthy: false, detail: `GET ${spec.path} on ${spec.host}:${spec.port}: ${err.message}` }));
      req.end();
    }
  });
}

export class AppHealth {
  private timer: NodeJS.Timeout | undefined;
  private failuresInRow = 0;
  private stopped = true;
  healthy = false;
  detail = 'not checked yet';

  constructor(
    private readonly spec: HealthCheckSpec,
    private readonly onChange: (result: HealthResult) => void,
  ) {}

  /** Probes once now (so the first registration carries a real answer), then every interval. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.check();
    this.loop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private loop(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.check().then(() => this.loop()), this.spec.intervalMs);
    this.timer.unref?.();
  }

  private async check(): Promise<void> {
    const result = await probeOnce(this.spec);
    this.detail = result.detail;
    if (result.healthy) {
      this.failuresInRow = 0;
      if (!this.healthy) {
        this.healthy = true;
        this.onChange(result);
      }
      return;
    }
    this.failuresInRow++;
    // Before the first success, one failure is enough: an app that is not up yet is not healthy.
    if (this.healthy && this.failuresInRow >= this.spec.unhealthyAfter) {
      this.healthy = false;
      this.onChange(result);
    }
  }
}
