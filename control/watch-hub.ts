/**
 * Config distribution: one long-lived watch stream per agent, a full snapshot first, then deltas.
 *
 * Registry events are batched for one tick (many agents reconnecting at once make one delta per
 * service, not one per agent per agent) and each changed service's delta line is serialised once and
 * written as the same bytes to every stream that calls that service. A stream whose agent reads too
 * slowly to keep its buffer under `maxBufferedBytes` is closed: the agent reconnects and starts again from
 * a snapshot, which is cheaper than holding an unbounded backlog for it.
 *
 * Wildcard subscribers (`ns/*`, `*` / `*`: every service of the mesh) get every service in their snapshot,
 * the whole upstream when a service joins the mesh, and `removedUpstreams` when it leaves; an agent that
 * names a service keeps it (empty) when it leaves, as before. A changed service is serialised at most
 * three times (endpoint changes, whole upstream, removal) whoever listens, and each stream is written once.
 *
 * With `scopeDiscovery`, a wildcard subscriber learns only the services its identity could be allowed to
 * call (`discovery-scope.ts`): the others are left out of its snapshot and deltas, and a policy change
 * sends it, with the new policies, the services it may now reach (whole) and those it no longer may
 * (`removedUpstreams`). Services an agent names are not scoped.
 *
 * The zone ingress is told exactly the services its zone exports (`ingress-view.ts`), whatever it asks for.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint, UpstreamService } from '../api/data-plane.js';
import {
  ALL_UPSTREAMS,
  ANY_UPSTREAM,
  isWildcardRef,
  upstreamKey,
  type AgentSnapshot,
  type EndpointChange,
  type UpstreamRef,
  type WatchDeltaMessage,
  type WatchMessage,
} from '../api/control-protocol.js';
import { IngressTold, IngressView, type ExportDecision } from './ingress-view.js';
import { DiscoveryScope, type ScopedCaller } from './discovery-scope.js';
import type { RegistryEvent } from './registry.js';
import type { DiscoveryRegistry } from './zone-sync/mesh-view.js';
import { policiesFor, snapshotHead, trafficAsWritten, type SnapshotSources } from './snapshot-head.js';
import { policyRevision } from './policy-source.js';
import { normaliseSubscription, SubscriptionIndex } from './subscription-index.js';

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

export interface WatchHubOptions extends SnapshotSources {
  /** The registry, or in a zone of a multi-zone mesh the view that adds other zones' services (zone-sync/mesh-view.ts). */
  readonly registry: DiscoveryRegistry;
  readonly pingIntervalMs: number;
  readonly maxBufferedBytes: number;
  /**
   * Whether this zone exports a service (zone-sync/exports.ts `ZoneExports.exported`): the zone ingress is
   * told those and no other. Absent: the ingress is told nothing.
   */
  readonly ingressExports?: ExportDecision;
  /** Wildcard subscribers learn only the services policy could let them call (default: every mesh service). */
  readonly scopeDiscovery?: boolean;
  /** Called once per pushed change with how many streams got it and how long the fan-out took. */
  readonly onPush?: (streams: number, seconds: number) => void;
  readonly onSlowStream?: (subscriber: WatchSubscriber) => void;
}

interface Stream {
  readonly subscriber: WatchSubscriber;
  /** The subscription without duplicates or services a wildcard of it covers. */
  readonly refs: readonly UpstreamRef[];
  readonly sink: WatchSink;
  /** Set for the zone ingress (told the exported services only): what it was told (ingress-view.ts). */
  readonly told: IngressTold | undefined;
  closed: boolean;
}

/** The zone ingress's subscription, whatever it asked for: every service its view lets through. */
const INGRESS_REFS: readonly UpstreamRef[] = Object.freeze([ALL_UPSTREAMS]);

export class WatchHub {
  /** Identifies this control plane process in every snapshot. */
  readonly epoch = randomBytes(6).toString('hex');
  private version = 1;
  private readonly streams = new Set<Stream>();
  private readonly interested = new SubscriptionIndex<Stream>();
  private pending = new Map<string, Map<string, Endpoint | undefined>>();
  private pendingPorts = new Set<string>();
  /**
   * Every mesh service's upstream as JSON, for `*` / `*` snapshots, per caller identity when discovery is
   * scoped (one entry otherwise); dropped at any registry or policy change.
   */
  private readonly wholeMeshJson = new Map<string, string>();
  private scope: DiscoveryScope | undefined;
  /** Services that joined or left the mesh since the last flush. */
  private pendingMembership = new Set<string>();
  /** Services whose export word changed (nothing for agents; the ingress's view may have moved). */
  private pendingExports = new Set<string>();
  private readonly ingress: IngressView;
  private flushScheduled = false;
  private readonly pinger: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

  constructor(private readonly options: WatchHubOptions) {
    this.scope = this.buildScope();
    this.ingress = new IngressView(options.ingressExports ?? (() => false), options.rootNamespace);
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
    const refs = this.refsOf(subscriber);
    // The ingress's snapshot is not cached: what it holds is what its stream remembers it was told.
    const upstreams = this.ingress.isIngress(subscriber) ? this.upstreamsOf(refs, subscriber) : undefined;
    const stream: Stream = { subscriber, sink, refs, told: upstreams === undefined ? undefined : new IngressTold(upstreams), closed: false };
    this.streams.add(stream);
    this.interested.add(stream, stream.refs);
    this.send(stream, this.snapshotLine(subscriber, stream.refs, upstreams));
    return () => this.drop(stream);
  }

  snapshotFor(subscriber: WatchSubscriber): AgentSnapshot {
    return { ...this.snapshotHead(subscriber), upstreams: this.upstreamsOf(this.refsOf(subscriber), subscriber) };
  }

  private refsOf(subscriber: WatchSubscriber): readonly UpstreamRef[] {
    return this.ingress.isIngress(subscriber) ? INGRESS_REFS : normaliseSubscription(subscriber.upstreams);
  }

  /**
   * The export decision may have changed for any service (the mesh-wide default came with the global's
   * welcome): the ingress streams get the services they gained (whole) and lost (`removedUpstreams`).
   */
  exportsChanged(): void {
    const { registry } = this.options;
    const version = ++this.version;
    const services = registry.meshServices().map((s) => upstreamKey(s.namespace, s.service));
    for (const stream of this.streams) {
      const moved = stream.told?.recompute(services, (ns, svc) => this.ingress.sees(ns, svc), (ns, svc) => registry.upstream(ns, svc));
      if (moved !== undefined) this.send(stream, JSON.stringify({ type: 'delta', version, ...moved } satisfies WatchDeltaMessage));
    }
  }

  private snapshotHead(subscriber: WatchSubscriber): Omit<AgentSnapshot, 'upstreams'> {
    return snapshotHead(this.options, subscriber);
  }

  /** The federated bundles changed: every stream gets the whole new set (`{}` for none). */
  federationChanged(): void {
    const line = JSON.stringify({ type: 'delta', version: ++this.version, federatedBundles: this.options.federatedBundles?.() ?? {} } satisfies WatchDeltaMessage);
    for (const stream of this.streams) this.send(stream, line);
  }

  /** The revoked list changed: every stream gets the whole new list (it is short: entries leave at their notAfter). */
  revocationsChanged(): void {
    const line = JSON.stringify({ type: 'delta', version: ++this.version, revokedSerials: this.options.revokedSerials?.() ?? [] } satisfies WatchDeltaMessage);
    for (const stream of this.streams) this.send(stream, line);
  }

  private snapshotLine(subscriber: WatchSubscriber, refs: readonly UpstreamRef[], given?: readonly UpstreamService[]): string {
    const envelope = { type: 'snapshot', version: this.version, epoch: this.epoch, pingIntervalMs: this.options.pingIntervalMs } as const;
    if (given !== undefined) return JSON.stringify({ ...envelope, snapshot: { ...this.snapshotHead(subscriber), upstreams: given } } satisfies WatchMessage);
    if (refs.length !== 1 || refs[0]?.namespace !== ANY_UPSTREAM) return JSON.stringify({ ...envelope, snapshot: this.snapshotFor(subscriber) } satisfies WatchMessage);
    // Every service of the mesh: the same (large) list for every such agent until the registry changes, so
    // a reconnect storm serialises it once. Spliced in as the snapshot's last field.
    const key = this.scope === undefined ? '' : upstreamKey(subscriber.namespace, subscriber.service);
    let upstreams = this.wholeMeshJson.get(key);
    if (upstreams === undefined) this.wholeMeshJson.set(key, (upstreams = JSON.stringify(this.upstreamsOf(refs, subscriber))));
    const head = JSON.stringify({ ...envelope, snapshot: this.snapshotHead(subscriber) });
    return `${head.slice(0, -2)},"upstreams":${upstreams}}}`;
  }

  /**
   * The policy set changed: every stream gets its namespace's policies and, when discovery is scoped, the
   * services its wildcards may now reach or no longer may. One line per namespace, caller and subscription.
   */
  policyChanged(): void {
    const before = this.scope;
    this.scope = this.buildScope();
    this.wholeMeshJson.clear();
    const version = ++this.version;
    const lines = new Map<string, string>();
    const started = process.hrtime.bigint();
    let count = 0;
    for (const stream of this.streams) {
      const { namespace: ns, service } = stream.subscriber;
      // Policy never changes what the ingress sees (its zone's exports do).
      const scoped = this.scope !== undefined && stream.told === undefined && stream.refs.some(isWildcardRef);
      const key = scoped ? `${ns}/${service}|${JSON.stringify(stream.refs)}` : ns;
      let line = lines.get(key);
      if (line === undefined) {
        const policies = policiesFor(this.options, ns);
        const reach = scoped ? this.reachChanges(stream, before) : {};
        line = JSON.stringify({ type: 'delta', version, ...reach, policies, policyRevision: policyRevision(policies), traffic: trafficAsWritten(this.options) } satisfies WatchDeltaMessage);
        lines.set(key, line);
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

  private buildScope(): DiscoveryScope | undefined {
    return this.options.scopeDiscovery === true ? DiscoveryScope.of(this.options.policies(), this.options.trustDomain, this.options.rootNamespace) : undefined;
  }

  /**
   * Whether the caller's wildcards may include the service: for the zone ingress, whether its zone exports
   * it (ingress-view.ts; policy never names the ingress as a caller); for anyone else always, unless
   * discovery is scoped.
   */
  private visible(caller: ScopedCaller, namespace: string, service: string): boolean {
    if (this.ingress.isIngress(caller)) return this.ingress.sees(namespace, service);
    return this.scope === undefined || this.scope.mayReach(caller, namespace, service);
  }

  /** Named services as the registry has them (empty when unknown), then every mesh service a wildcard covers that the caller may reach. */
  private upstreamsOf(refs: readonly UpstreamRef[], caller: ScopedCaller): UpstreamService[] {
    const { registry } = this.options;
    const upstreams: UpstreamService[] = [];
    for (const ref of refs) {
      if (ref.service !== ANY_UPSTREAM) upstreams.push(registry.upstream(ref.namespace, ref.service));
      else for (const s of registry.meshServices(ref.namespace === ANY_UPSTREAM ? undefined : ref.namespace)) if (this.visible(caller, s.namespace, s.service)) upstreams.push(registry.upstream(s.namespace, s.service));
    }
    return upstreams;
  }

  /** The mesh services a stream's wildcards gained or lost between two scopes (`before` undefined: it saw them all). */
  private reachChanges(stream: Stream, before: DiscoveryScope | undefined): Pick<WatchDeltaMessage, 'upstreams' | 'removedUpstreams'> {
    const { registry } = this.options;
    const caller = stream.subscriber;
    const gained: UpstreamService[] = [];
    const lost: UpstreamRef[] = [];
    for (const ref of stream.refs) {
      if (!isWildcardRef(ref)) continue;
      for (const s of registry.meshServices(ref.namespace === ANY_UPSTREAM ? undefined : ref.namespace)) {
        const was = before === undefined || before.mayReach(caller, s.namespace, s.service);
        const is = this.visible(caller, s.namespace, s.service);
        if (is && !was) gained.push(registry.upstream(s.namespace, s.service));
        else if (was && !is) lost.push({ service: s.service, namespace: s.namespace });
      }
    }
    return { ...(gained.length === 0 ? {} : { upstreams: gained }), ...(lost.length === 0 ? {} : { removedUpstreams: lost }) };
  }

  private onRegistryEvent(event: RegistryEvent): void {
    this.wholeMeshJson.clear();
    if (!this.interested.wants(event.namespace, event.service)) return;
    const key = upstreamKey(event.namespace, event.service);
    // Agents are not told what other zones see; only the ingress's view may move.
    if (event.kind === 'export') {
      this.pendingExports.add(key);
    } else if (event.kind === 'ports') {
      this.pendingPorts.add(key);
    } else if (event.kind === 'service') {
      this.pendingMembership.add(key);
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
    const pendingMembership = this.pendingMembership;
    const pendingExports = this.pendingExports;
    this.pending = new Map();
    this.pendingPorts = new Set();
    this.pendingMembership = new Set();
    this.pendingExports = new Set();
    const version = ++this.version;
    const started = process.hrtime.bigint();
    let count = 0;
    const writeOne = (stream: Stream, line: string): void => {
      this.send(stream, line);
      count++;
    };
    const writeOut = (stream: Stream, line: string | undefined): void => {
      if (line !== undefined) writeOne(stream, line);
    };
    const write = (streams: ReadonlySet<Stream>, line: string): void => {
      for (const stream of streams) writeOne(stream, line);
    };
    for (const key of new Set([...pending.keys(), ...pendingPorts, ...pendingMembership, ...pendingExports])) {
      const slash = key.indexOf('/');
      const namespace = key.slice(0, slash);
      const service = key.slice(slash + 1);
      const changes = pending.get(key);
      // Serialised lazily and at most once each, however many streams get them.
      let whole: string | undefined;
      let endpoints: string | undefined;
      const wholeLine = (): string => (whole ??= JSON.stringify({ type: 'delta', version, upstreams: [this.options.registry.upstream(namespace, service)] } satisfies WatchDeltaMessage));
      const endpointLine = (): string => (endpoints ??= JSON.stringify({ type: 'delta', version, endpoints: endpointChanges(namespace, service, changes) } satisfies WatchDeltaMessage));
      const removal = (): string => JSON.stringify({ type: 'delta', version, removedUpstreams: [{ service, namespace }] } satisfies WatchDeltaMessage);
      const wildcards = this.interested.wildcardStreams(namespace);
      const exportOnly = changes === undefined && !pendingPorts.has(key) && !pendingMembership.has(key);
      // An ingress stream's line: the whole upstream when it became exported, its removal when it stopped being.
      let exported: boolean | undefined;
      const ingressLines = { whole: wholeLine, removal, change: () => (exportOnly ? undefined : changes === undefined ? wholeLine() : endpointLine()) };
      const ingressLine = (told: IngressTold): string | undefined => told.lineFor(key, (exported ??= this.ingress.sees(namespace, service)), ingressLines);
      if (exportOnly) {
        for (const group of wildcards) for (const stream of group) if (stream.told !== undefined) writeOut(stream, ingressLine(stream.told));
        continue;
      }
      const named = this.interested.namedStreams(namespace, service);
      if (named !== undefined && named.size > 0) write(named, pendingPorts.has(key) || changes === undefined ? wholeLine() : endpointLine());
      if (wildcards.length === 0) continue;
      let line: string | undefined;
      if (this.options.registry.hasMeshService(namespace, service)) {
        // New to these agents (or its ports changed): the whole upstream; otherwise just the endpoints.
        line = pendingMembership.has(key) || pendingPorts.has(key) || changes === undefined ? wholeLine() : endpointLine();
      } else if (pendingMembership.has(key)) {
        line = removal();
      }
      // Not in the mesh and it did not just leave: a definition without workloads, nobody's wildcard.
      for (const group of wildcards) {
        for (const stream of group) writeOut(stream, stream.told !== undefined ? ingressLine(stream.told) : line !== undefined && this.visible(stream.subscriber, namespace, service) ? line : undefined);
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
    this.interested.remove(stream, stream.refs);
  }
}

function endpointChanges(namespace: string, service: string, changes: ReadonlyMap<string, Endpoint | undefined> | undefined): EndpointChange[] {
  const list: EndpointChange[] = [];
  for (const [key, endpoint] of changes ?? []) list.push(endpoint === undefined ? { service, namespace, remove: key } : { service, namespace, set: endpoint });
  return list;
}
