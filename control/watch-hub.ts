/**
 * Config distribution: one long-lived watch stream per agent, a full snapshot first, then deltas.
 *
 * Registry events are batched for one tick (many agents reconnecting at once make one delta per
 * service, not one per agent per agent) and each changed service's delta line is serialised once and
 * written as the same bytes to every stream that calls that service. A stream whose agent reads too
 * slowly to keep its buffer under `maxBufferedBytes` is closed: the agent reconnects and starts again from
 * a snapshot, which is cheaper than holding an unbounded backlog for it.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint, UpstreamService } from '../api/data-plane.js';
import {
  upstreamKey,
  type AgentSnapshot,
  type EndpointChange,
  type UpstreamRef,
  type WatchDeltaMessage,
  type WatchMessage,
} from '../api/control-protocol.js';
import type { TrafficPermission } from '../policy/types.js';
import type { RegistryEvent, ServiceRegistry } from './registry.js';
import { policyRevision } from './policy-source.js';

/** The transport under one agent's watch (an HTTP response in production, an array in tests). */
export interface WatchSink {
  write(line: string): void;
  /** Bytes accepted but not yet sent to the agent. */
  readonly bufferedBytes: number;
  close(reason: string): void;
}

export interface WatchSubscriber {
  readonly instanceId: string;
  readonly service: string;
  readonly namespace: string;
  readonly spiffeId: string;
  readonly upstreams: readonly UpstreamRef[];
}

export interface WatchHubOptions {
  readonly registry: ServiceRegistry;
  readonly trustDomain: string;
  readonly rootNamespace: string;
  readonly zone: string;
  readonly pingIntervalMs: number;
  readonly maxBufferedBytes: number;
  readonly trustBundlePem: () => string;
  readonly policies: () => readonly TrafficPermission[];
  /** Called once per pushed change with how many streams got it and how long the fan-out took. */
  readonly onPush?: (streams: number, seconds: number) => void;
  readonly onSlowStream?: (subscriber: WatchSubscriber) => void;
}

interface Stream {
  readonly subscriber: WatchSubscriber;
  readonly sink: WatchSink;
  closed: boolean;
}

export class WatchHub {
  /** Identifies this control plane process in every snapshot. */
  readonly epoch = randomBytes(6).toString('hex');
  private version = 1;
  private readonly streams = new Set<Stream>();
  /** upstreamKey → streams that call it. */
  private readonly interested = new Map<string, Set<Stream>>();
  private pending = new Map<string, Map<string, Endpoint | undefined>>();
  private pendingPorts = new Set<string>();
  private flushScheduled = false;
  private readonly pinger: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

  constructor(private readonly options: WatchHubOptions) {
    this.unsubscribe = options.registry.subscribe((event) => this.onRegistryEvent(event));
    this.pinger = setInterval(() => this.ping(), options.pingIntervalMs);
    this.pinger.unref();
  }

  get currentVersion(): number {
    return this.version;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Starts one agent's watch: writes its snapshot now; returns the function that ends it. */
  open(subscriber: WatchSubscriber, sink: WatchSink): () => void {
    const stream: Stream = { subscriber, sink, closed: false };
    this.streams.add(stream);
    for (const ref of subscriber.upstreams) {
      const key = upstreamKey(ref.namespace, ref.service);
      let set = this.interested.get(key);
      if (set === undefined) this.interested.set(key, (set = new Set()));
      set.add(stream);
    }
    this.send(stream, JSON.stringify({ type: 'snapshot', version: this.version, epoch: this.epoch, pingIntervalMs: this.options.pingIntervalMs, snapshot: this.snapshotFor(subscriber) } satisfies WatchMessage));
    return () => this.drop(stream);
  }

  snapshotFor(subscriber: WatchSubscriber): AgentSnapshot {
    const policies = this.policiesFor(subscriber.namespace);
    return {
      trustDomain: this.options.trustDomain,
      rootNamespace: this.options.rootNamespace,
      zone: this.options.zone,
      self: { service: subscriber.service, namespace: subscriber.namespace, spiffeId: subscriber.spiffeId },
      trustBundlePem: this.options.trustBundlePem(),
      policies,
      policyRevision: policyRevision(policies),
      upstreams: subscriber.upstreams.map((ref) => this.options.registry.upstream(ref.namespace, ref.service)),
    };
  }

  /** The policy set changed: every namespace's streams get their filtered set, if it changed for them. */
  policyChanged(): void {
    const version = ++this.version;
    const lines = new Map<string, string>();
    const started = process.hrtime.bigint();
    let count = 0;
    for (const stream of this.streams) {
      const ns = stream.subscriber.namespace;
      let line = lines.get(ns);
      if (line === undefined) {
        const policies = this.policiesFor(ns);
        line = JSON.stringify({ type: 'delta', version, policies, policyRevision: policyRevision(policies) } satisfies WatchDeltaMessage);
        lines.set(ns, line);
      }
      this.send(stream, line);
      count++;
    }
    this.options.onPush?.(count, Number(process.hrtime.bigint() - started) / 1e9);
  }

  trustBundleChanged(): void {
    const line = JSON.stringify({ type: 'delta', version: ++this.version, trustBundlePem: this.options.trustBundlePem() } satisfies WatchDeltaMessage);
    for (const stream of this.streams) this.send(stream, line);
  }

  close(): void {
    clearInterval(this.pinger);
    this.unsubscribe();
    for (const stream of [...this.streams]) {
      stream.sink.close('control plane shutting down');
      this.drop(stream);
    }
  }

  private policiesFor(namespace: string): TrafficPermission[] {
    const root = this.options.rootNamespace;
    return this.options.policies().filter((p) => p.metadata.namespace === namespace || p.metadata.namespace === root);
  }

  private onRegistryEvent(event: RegistryEvent): void {
    const key = upstreamKey(event.namespace, event.service);
    if (!this.interested.has(key)) return;
    if (event.kind === 'ports') {
      this.pendingPorts.add(key);
    } else {
      let changes = this.pending.get(key);
      if (changes === undefined) this.pending.set(key, (changes = new Map()));
      changes.set(event.key, event.endpoint);
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const pending = this.pending;
    const pendingPorts = this.pendingPorts;
    this.pending = new Map();
    this.pendingPorts = new Set();
    const version = ++this.version;
    const started = process.hrtime.bigint();
    let count = 0;
    for (const key of new Set([...pending.keys(), ...pendingPorts])) {
      const streams = this.interested.get(key);
      if (streams === undefined || streams.size === 0) continue;
      let message: WatchDeltaMessage;
      if (pendingPorts.has(key)) {
        const slash = key.indexOf('/');
        const upstream: UpstreamService = this.options.registry.upstream(key.slice(0, slash), key.slice(slash + 1));
        message = { type: 'delta', version, upstreams: [upstream] };
      } else {
        const slash = key.indexOf('/');
        const namespace = key.slice(0, slash);
        const service = key.slice(slash + 1);
        const endpoints: EndpointChange[] = [];
        for (const [ekey, endpoint] of pending.get(key) ?? []) {
          endpoints.push(endpoint === undefined ? { service, namespace, remove: ekey } : { service, namespace, set: endpoint });
        }
        message = { type: 'delta', version, endpoints };
      }
      const line = JSON.stringify(message);
      for (const stream of streams) {
        this.send(stream, line);
        count++;
      }
    }
    this.options.onPush?.(count, Number(process.hrtime.bigint() - started) / 1e9);
  }

  private ping(): void {
    const line = JSON.stringify({ type: 'ping', version: this.version } satisfies WatchMessage);
    for (const stream of this.streams) this.send(stream, line);
  }

  private send(stream: Stream, line: string): void {
    if (stream.closed) return;
    if (stream.sink.bufferedBytes > this.options.maxBufferedBytes) {
      this.options.onSlowStream?.(stream.subscriber);
      stream.sink.close(`the agent read too slowly (${stream.sink.bufferedBytes} bytes unsent)`);
      this.drop(stream);
      return;
    }
    stream.sink.write(`${line}\n`);
  }

  private drop(stream: Stream): void {
    if (stream.closed) return;
    stream.closed = true;
    this.streams.delete(stream);
    for (const ref of stream.subscriber.upstreams) {
      const key = upstreamKey(ref.namespace, ref.service);
      const set = this.interested.get(key);
      set?.delete(stream);
      if (set !== undefined && set.size === 0) this.interested.delete(key);
    }
  }
}
