/**
 * The agent's end of the watch: one long-lived mTLS request to the control plane that carries the
 * registration up and NDJSON config messages down. Lines are split by hand with a bound on their length
 * (a snapshot is one line; a line larger than `maxLineBytes` is not ours). Silence for three ping
 * intervals means a half-open connection: it is cut and opened again. Every disconnect is followed by a
 * reconnect after a jittered, growing delay; the config in force stays in force meanwhile.
 */
import type { IncomingMessage } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { CONTROL_PATHS, type Registration, type WatchMessage } from '../api/control-protocol.js';
import { ControlError, openControlStream, type ClientCertificate, type ControlEndpoint } from '../api/control-client.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { Backoff } from '../common/backoff.js';
import { ConfigState, type VersionedSnapshot } from './config-state.js';
import { CODE } from '../common/error-codes.js';

export interface ConfigWatchOptions {
  readonly endpoint: () => ControlEndpoint;
  readonly clientCert: () => ClientCertificate;
  /** Called before every connect (the address may only be learnt once the control plane is reachable). */
  readonly registration: () => Registration | Promise<Registration>;
  readonly log: Logger;
  /** The config changed (a snapshot or a delta applied); called at most once per event-loop turn. */
  readonly onConfig: (config: VersionedSnapshot) => void;
  readonly onConnected: () => void;
  readonly onDisconnected: (reason: string) => void;
  /** The control plane refused the certificate (expired, revoked trust): the identity needs attention. */
  readonly onAuthRefused?: (err: ControlError) => void;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly maxLineBytes?: number;
  /** Used until the first snapshot names the control plane's ping interval. */
  readonly defaultPingIntervalMs?: number;
}

export class ConfigWatch {
  private stopped = true;
  private response: IncomingMessage | undefined;
  private state: ConfigState | undefined;
  /** The upstreams of the registration the current stream was opened with. */
  private subscription: Registration['upstreams'] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private pingIntervalMs: number;
  private pendingNotify = false;
  private readonly backoff: Backoff;
  connected = false;
  connectedSince: Date | undefined;
  disconnectedSince: Date | undefined = new Date();
  lastError: string | undefined;

  constructor(private readonly options: ConfigWatchOptions) {
    this.backoff = new Backoff(options.backoff ?? { initialMs: 250, maxMs: 15_000 });
    this.pingIntervalMs = options.defaultPingIntervalMs ?? 10_000;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.idleTimer);
    this.response?.destroy();
  }

  /** Drop the current stream and reconnect now (e.g. after a new certificate). */
  restart(): void {
    if (this.stopped) return;
    this.response?.destroy();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let res: IncomingMessage;
    try {
      const registration = await this.options.registration();
      this.subscription = registration.upstreams;
      res = await openControlStream(this.options.endpoint(), {
        method: 'POST',
        path: CONTROL_PATHS.watch,
        body: { registration },
        clientCert: this.options.clientCert(),
      });
    } catch (err) {
      this.failed(describeError(err));
      return;
    }
    if (this.stopped) {
      res.destroy();
      return;
    }
    if (res.statusCode !== 200) {
      const body = await readSmall(res);
      let code: string = CODE.CONTROL_HTTP_ERROR;
      let message = `watch refused with ${res.statusCode}`;
      try {
        const parsed = JSON.parse(body) as { error?: { code?: string; message?: string } };
        code = parsed.error?.code ?? code;
        message = parsed.error?.message ?? message;
      } catch {
        // keep the generic message
      }
      const err = new ControlError(res.statusCode ?? 0, code, message);
      if (err.status === 401 || err.status === 403) this.options.onAuthRefused?.(err);
      this.failed(`${message} [${code}]`);
      return;
    }
    this.response = res;
    this.consume(res);
  }

  private consume(res: IncomingMessage): void {
    const decoder = new StringDecoder('utf8');
    const maxLine = this.options.maxLineBytes ?? 64 * 1024 * 1024;
    // The pieces of a line not yet ended: only each new chunk is searched for a newline, so a large
    // snapshot (every service of a mesh) costs linear time however many chunks it arrives in.
    const partial: string[] = [];
    let partialLength = 0;
    let ended = false;
    this.armIdle(res);
    res.on('data', (chunk: Buffer) => {
      const text = decoder.write(chunk);
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        partial.push(text.slice(start, nl));
        const line = partial.length === 1 ? (partial[0] as string) : partial.join('');
        partial.length = 0;
        partialLength = 0;
        start = nl + 1;
        if (line.length > 0 && !this.onLine(line)) {
          res.destroy();
          return;
        }
      }
      if (start < text.length) {
        partial.push(text.slice(start));
        partialLength += text.length - start;
      }
      // Re-armed after the lines are read: a snapshot may just have named a new ping interval.
      this.armIdle(res);
      if (partialLength > maxLine) {
        this.options.log.error({ bytes: partialLength }, 'watch line longer than the limit; reconnecting');
        res.destroy();
      }
    });
    const done = (reason: string): void => {
      if (ended) return;
      ended = true;
      clearTimeout(this.idleTimer);
      if (this.response === res) this.response = undefined;
      this.failed(reason);
    };
    res.on('end', () => done('the control plane closed the watch'));
    res.on('close', () => done('the watch connection closed'));
    res.on('error', (err) => done(`watch stream error: ${err.message}`));
  }

  /** Returns false when the stream must be dropped (garbage, or a delta that does not apply). */
  private onLine(line: string): boolean {
    let message: WatchMessage;
    try {
      message = JSON.parse(line) as WatchMessage;
    } catch {
      this.options.log.error('watch sent a line that is not JSON; reconnecting');
      return false;
    }
    if (message.type === 'ping') return true;
    if (message.type === 'snapshot') {
      this.state = ConfigState.fromSnapshot(message, this.subscription);
      this.pingIntervalMs = message.pingIntervalMs > 0 ? message.pingIntervalMs : this.pingIntervalMs;
      if (!this.connected) {
        this.connected = true;
        this.connectedSince = new Date();
        this.disconnectedSince = undefined;
        this.lastError = undefined;
        this.backoff.reset();
        this.options.onConnected();
      }
      this.notify();
      return true;
    }
    if (message.type === 'delta') {
      if (this.state === undefined) {
        this.options.log.error('watch sent a delta before any snapshot; reconnecting');
        return false;
      }
      try {
        this.state.apply(message);
      } catch (err) {
        this.options.log.error({ err: describeError(err) }, 'cannot apply a config delta; reconnecting for a fresh snapshot');
        return false;
      }
      this.notify();
      return true;
    }
    return true;
  }

  private notify(): void {
    if (this.pendingNotify) return;
    this.pendingNotify = true;
    // A burst of deltas (many endpoints changing at once) becomes one config swap.
    setImmediate(() => {
      this.pendingNotify = false;
      if (this.state !== undefined && !this.stopped) this.options.onConfig(this.state.current());
    });
  }

  private armIdle(res: IncomingMessage): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.options.log.warn({ silentMs: this.pingIntervalMs * 3 }, 'no message from the control plane for three ping intervals; reconnecting');
      res.destroy();
    }, this.pingIntervalMs * 3);
    this.idleTimer.unref?.();
  }

  private failed(reason: string): void {
    this.lastError = reason;
    if (this.connected) {
      this.connected = false;
      this.connectedSince = undefined;
      this.disconnectedSince = new Date();
      this.options.onDisconnected(reason);
    }
    if (this.stopped) return;
    const wait = this.backoff.next();
    this.options.log.debug({ reason, retryInMs: wait }, 'watch not connected; retrying');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), wait);
    this.retryTimer.unref?.();
  }
}

async function readSmall(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res as AsyncIterable<Buffer>) {
    text += chunk.toString('utf8');
    if (text.length > 64 * 1024) break;
  }
  return text;
}
