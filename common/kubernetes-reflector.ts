/**
 * A local copy of one kind of Kubernetes object, kept current with list-then-watch (the reflector of
 * client-go informers).
 *
 * - List (paged) gives the objects and a resourceVersion; the watch starts from that version, so no
 *   change between the two is missed. Every event moves the version on, bookmarks included.
 * - A watch the server ends (its timeout) resumes at once from the last version; a broken one
 *   (reset, inactivity, 5xx) resumes from it after a backoff with jitter, so a restarting API server
 *   is not stampeded.
 * - `410 Gone` (the version fell out of the API server's watch window), as an HTTP status or as an
 *   ERROR event carrying a Status, means events were lost: list again from scratch. A relist is
 *   diffed against the copy, so consumers see only real changes, deletions included.
 * - Every `resyncIntervalMs` the copy is relisted anyway, as a guard against a missed event.
 *
 * Objects are reduced by `project` to the few fields a consumer reads before they are kept: a cluster
 * has many pods, and the control plane must not hold every pod's full spec.
 *
 * In common/ because two components watch the API with it: the zone control plane's Kubernetes mode
 * (control/kubernetes/) and the gateway's (gateway/kubernetes/).
 */
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { describeError } from './errors.js';
import type { Logger } from './log.js';
import type { Counter, Gauge } from 'prom-client';

/** The health of each watch, labelled by resource (the control plane's and the gateway's own metric names). */
export interface ReflectorMetrics {
  readonly watchEvents: Counter<'resource' | 'type'>;
  readonly relists: Counter<'resource' | 'reason'>;
  readonly watchErrors: Counter<'resource'>;
  readonly synced: Gauge<'resource'>;
}

export interface ListPage {
  readonly items: readonly unknown[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

/** One kind of object: how to list it (a typed client call) and where to watch it. */
export interface ResourceSource {
  /** Plural resource name, for logs and metric labels: "pods", "endpointslices". */
  readonly resource: string;
  /** Cluster-wide collection path, e.g. `/apis/discovery.k8s.io/v1/endpointslices`. */
  readonly watchPath: string;
  /** Extra watch parameters, the same selectors the list uses (e.g. `fieldSelector: type=kubernetes.io/tls`). */
  readonly watchQuery?: Readonly<Record<string, string>>;
  list(limit: number, continueToken: string | undefined): Promise<ListPage>;
}

export interface ReflectorHandler<T> {
  /** An object appeared or changed (a new resourceVersion); `previous` is the last kept projection. */
  upsert(key: string, value: T, previous: T | undefined): void;
  delete(key: string, previous: T): void;
  /** A full list has been applied (at start, after 410, on resync). */
  synced?(): void;
}

export interface ReflectorOptions<T> {
  readonly kubeConfig: KubeConfig;
  readonly source: ResourceSource;
  /** The fields kept of a raw object; undefined drops the object (malformed, or of no interest). */
  readonly project: (raw: unknown) => T | undefined;
  readonly handler: ReflectorHandler<T>;
  readonly log: Logger;
  readonly metrics?: ReflectorMetrics;
  /** Full relist interval; default 30 minutes. */
  readonly resyncIntervalMs?: number;
  /** Backoff after a failed list or watch: doubles from `initialMs` up to `maxMs`, ±20% jitter. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Page size of lists; default 500 (what kubectl and client-go use). */
  readonly pageSize?: number;
  /** Server-side watch timeout, randomised in [min, 2×min) seconds so watches do not all restart together; default 300. */
  readonly watchTimeoutSeconds?: number;
}

export const REFLECTOR_DEFAULTS = Object.freeze({
  resyncIntervalMs: 30 * 60_000,
  backoff: Object.freeze({ initialMs: 500, maxMs: 30_000 }),
  pageSize: 500,
  watchTimeoutSeconds: 300,
  /** A watch that ends cleanly sooner than this counts as a failure (a proxy closing it at once must not spin). */
  minHealthyWatchMs: 1_000,
});

const STOP_WAIT_MS = 2_000;

type WatchOutcome = 'closed' | 'expired' | 'resync' | 'stopped';

interface Kept<T> {
  readonly resourceVersion: string;
  readonly value: T;
}

/** The HTTP status of a failed list or watch, wherever the client put it. */
export function statusCodeOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown };
  if (typeof e.statusCode === 'number') return e.statusCode;
  if (typeof e.code === 'number') return e.code;
  return undefined;
}

export function objectKey(raw: unknown): string | undefined {
  const meta = (raw as { metadata?: { name?: unknown; namespace?: unknown } } | null)?.metadata;
  if (typeof meta?.name !== 'string') return undefined;
  return typeof meta.namespace === 'string' && meta.namespace !== '' ? `${meta.namespace}/${meta.name}` : meta.name;
}

function resourceVersionOf(raw: unknown): string {
  const rv = (raw as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : '';
}

export class Reflector<T> {
  private readonly kept = new Map<string, Kept<T>>();
  private resourceVersion = '';
  private stopped = false;
  private running: Promise<void> | undefined;
  private controller: AbortController | undefined;
  private wake: (() => void) | undefined;
  private resyncDue = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private firstSync: { promise: Promise<void>; resolve: () => void };
  private hasSynced = false;
  private readonly watcher: Watch;
  private readonly backoff: { readonly initialMs: number; readonly maxMs: number };

  constructor(private readonly options: ReflectorOptions<T>) {
    let resolve: () => void = () => undefined;
    const promise = new Promise<void>((r) => (resolve = r));
    this.firstSync = { promise, resolve };
    this.backoff = options.backoff ?? REFLECTOR_DEFAULTS.backoff;
    this.watcher = new Watch(options.kubeConfig);
    // The client aborts a watch after this long without a byte (its default, 30 s, is shorter than a
    // quiet resource's bookmark interval). Ours: the server-side timeout plus a margin.
    Object.assign(this.watcher, { requestTimeoutMs: (2 * this.watchTimeoutSeconds() + 30) * 1000 });
  }

  get resource(): string {
    return this.options.source.resource;
  }

  /** The last resourceVersion seen (from a list, an event or a bookmark). */
  get lastResourceVersion(): string {
    return this.resourceVersion;
  }

  get synced(): boolean {
    return this.hasSynced;
  }

  keys(): string[] {
    return [...this.kept.keys()];
  }

  get(key: string): T | undefined {
    return this.kept.get(key)?.value;
  }

  get size(): number {
    return this.kept.size;
  }

  /** Starts the list/watch loop; `whenSynced` resolves after the first complete list. */
  start(): void {
    if (this.running !== undefined) return;
    const interval = this.options.resyncIntervalMs ?? REFLECTOR_DEFAULTS.resyncIntervalMs;
    this.resyncTimer = setInterval(() => this.resync(), interval);
    this.resyncTimer.unref();
    this.running = this.loop();
  }

  whenSynced(): Promise<void> {
    return this.firstSync.promise;
  }

  /** Ends the current watch and lists everything again (also what the periodic resync does). */
  resync(): void {
    this.resyncDue = true;
    this.controller?.abort();
    this.wake?.();
  }

  /** Ends the loop; waits for it at most `STOP_WAIT_MS` (a watch still connecting cannot be aborted yet, and is dropped when it answers). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.controller?.abort();
    this.wake?.();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)))]);
    clearTimeout(timer);
  }

  private watchTimeoutSeconds(): number {
    return this.options.watchTimeoutSeconds ?? REFLECTOR_DEFAULTS.watchTimeoutSeconds;
  }

  private async loop(): Promise<void> {
    const { log, metrics } = this.options;
    const resource = this.options.source.resource;
    let listReason = 'start';
    while (!this.stopped) {
      try {
        if (this.resourceVersion === '' || this.resyncDue) {
          this.resyncDue = false;
          metrics?.relists.inc({ resource, reason: listReason });
          await this.relist();
          if (this.stopped) break;
        }
        const started = Date.now();
        const outcome = await this.watchOnce();
        if (outcome === 'stopped') break;
        if (outcome === 'expired') {
          log.info({ resource, resourceVersion: this.resourceVersion }, 'watch expired (410 Gone); listing again');
          this.resourceVersion = '';
          listReason = 'expired';
          // A fresh list's version expiring at once again means something is wrong between us and etcd: back off.
          if (this.failures > 0) await this.sleep(this.nextDelay());
          else this.failures++;
          continue;
        }
        if (outcome === 'resync') {
          listReason = 'resync';
          continue;
        }
        if (Date.now() - started < REFLECTOR_DEFAULTS.minHealthyWatchMs) {
          // Closed cleanly but at once: treat like a failure so that a misbehaving proxy cannot make us spin.
          await this.sleep(this.nextDelay());
        } else {
          this.failures = 0;
        }
      } catch (err) {
        if (this.stopped) break;
        metrics?.watchErrors.inc({ resource });
        metrics?.synced.set({ resource }, 0);
        if (statusCodeOf(err) === 410) {
          this.resourceVersion = '';
          listReason = 'expired';
          log.info({ resource }, 'list or watch answered 410 Gone; listing again');
          if (this.failures > 0) await this.sleep(this.nextDelay());
          else this.failures++;
          continue;
        }
        if (this.resourceVersion === '') listReason = 'error';
        const delay = this.nextDelay();
        log.warn({ resource, err: describeError(err), status: statusCodeOf(err), retryInMs: delay }, 'Kubernetes list/watch failed; retrying');
        await this.sleep(delay);
      }
    }
  }

  private nextDelay(): number {
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(this.failures, 20));
    this.failures++;
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  /** Lists every page, then replaces the copy: deletions for what is gone, upserts for what changed. */
  private async relist(): Promise<void> {
    const { source, project, handler } = this.options;
    const pageSize = this.options.pageSize ?? REFLECTOR_DEFAULTS.pageSize;
    const listed = new Map<string, Kept<T>>();
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      const page = await source.list(pageSize, continueToken);
      if (this.stopped) return;
      // The first page's version is the list's; later pages repeat it.
      if (continueToken === undefined) resourceVersion = page.resourceVersion;
      for (const raw of page.items) {
        const key = objectKey(raw);
        if (key === undefined) continue;
        const value = project(raw);
        if (value !== undefined) listed.set(key, { resourceVersion: resourceVersionOf(raw), value });
      }
      continueToken = page.continueToken === '' ? undefined : page.continueToken;
    } while (continueToken !== undefined);

    for (const [key, kept] of this.kept) {
      if (!listed.has(key)) {
        this.kept.delete(key);
        handler.delete(key, kept.value);
      }
    }
    for (const [key, next] of listed) {
      const previous = this.kept.get(key);
      if (previous !== undefined && previous.resourceVersion === next.resourceVersion && next.resourceVersion !== '') continue;
      this.kept.set(key, next);
      handler.upsert(key, next.value, previous?.value);
    }
    this.resourceVersion = resourceVersion;
    this.options.metrics?.synced.set({ resource: source.resource }, 1);
    this.options.log.debug({ resource: source.resource, objects: this.kept.size, resourceVersion }, 'listed');
    handler.synced?.();
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.firstSync.resolve();
    }
  }

  private watchOnce(): Promise<WatchOutcome> {
    const { source, project, handler, metrics } = this.options;
    const resource = source.resource;
    return new Promise<WatchOutcome>((resolve, reject) => {
      let expired = false;
      let finished = false;
      let failure: unknown;
      const onEvent = (type: string, object: unknown): void => {
        metrics?.watchEvents.inc({ resource, type });
        if (type === 'ERROR') {
          const status = object as { code?: unknown; message?: unknown; reason?: unknown } | null;
          if (status?.code === 410) expired = true;
          else failure = Object.assign(new Error(`watch ERROR event: ${String(status?.message ?? 'no message')} (${String(status?.reason ?? 'no reason')})`), { code: status?.code });
          return;
        }
        const rv = resourceVersionOf(object);
        if (type === 'BOOKMARK') {
          if (rv !== '') this.resourceVersion = rv;
          return;
        }
        const key = objectKey(object);
        if (key !== undefined) {
          const previous = this.kept.get(key);
          if (type === 'DELETED') {
            if (previous !== undefined) {
              this.kept.delete(key);
              handler.delete(key, previous.value);
            }
          } else if (type === 'ADDED' || type === 'MODIFIED') {
            const value = project(object);
            if (value === undefined) {
              // No longer of interest (or malformed now): as good as deleted for the consumer.
              if (previous !== undefined) {
                this.kept.delete(key);
                handler.delete(key, previous.value);
              }
            } else {
              this.kept.set(key, { resourceVersion: rv, value });
              handler.upsert(key, value, previous?.value);
            }
          }
        }
        if (rv !== '') this.resourceVersion = rv;
        this.failures = 0;
      };
      const onDone = (err: unknown): void => {
        finished = true;
        this.controller = undefined;
        if (this.stopped) return resolve('stopped');
        if (this.resyncDue) return resolve('resync');
        if (expired || statusCodeOf(err) === 410) return resolve('expired');
        if (failure !== undefined) return reject(failure);
        if (err !== null && err !== undefined) {
          // The client's inactivity timeout: nothing arrived for too long; resume from the last version.
          if ((err as { name?: unknown }).name === 'TimeoutError') return resolve('closed');
          return reject(err);
        }
        resolve('closed');
      };
      const timeoutSeconds = this.watchTimeoutSeconds();
      this.watcher
        .watch(
          source.watchPath,
          {
            ...source.watchQuery,
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds: timeoutSeconds + Math.floor(Math.random() * timeoutSeconds),
          },
          onEvent,
          onDone,
        )
        .then(
          (controller) => {
            // The request may already be over (done called); only a live one is kept for abort.
            if (finished) return;
            if (this.stopped || this.resyncDue) controller.abort();
            else this.controller = controller;
          },
          (err: unknown) => onDone(err),
        );
    });
  }
}
