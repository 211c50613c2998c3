/**
 * A zone control plane's link to the global one (`trellis control run --global URL --zone NAME`): it
 * joins once with a zone token, then keeps one sync stream open, reconnecting with backoff. Up: the
 * exported services (exports.ts), the ingress addresses and the zone's roots, as versioned deltas from
 * what the global says it holds. Down: the other zones' records and the mesh-wide policies, applied by
 * replicas and kept in the data dir (catalogue-file.ts), so neither a global outage nor a zone restart
 * loses them. While the global is unreachable the catalogue is served as it was (stale-while-revalidate),
 * up to `maxStalenessMs` (undefined: no limit), after which the remote records are withdrawn.
 */
import { randomBytes } from 'node:crypto';
import type { ClientHttp2Session } from 'node:http2';
import { Backoff, type BackoffOptions } from '../../common/backoff.js';
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { TrafficPermission } from '../../policy/types.js';
import { validatePolicyObjects } from '../../policy/validator.js';
import type { ServiceRegistry } from '../registry.js';
import { CatalogueFile } from './catalogue-file.js';
import { chunkDelta } from './chunking.js';
import { exportKey, exportedService, registeredIngresses, type ZoneExports } from './exports.js';
import { loadZoneCredentials, obtainZoneCredentials, openSession, type GlobalEndpoint, type ZoneCredentials } from './global-client.js';
import { LineStream } from './line-stream.js';
import { DOWN_KINDS, UP_KINDS, ZONE_SYNC_LIMITS, ZONE_SYNC_PATHS, ZONE_SYNC_PROTOCOL_VERSION, parseDownMessage, type DownKind, type UpKind } from './protocol.js';
import { VersionedSet } from './versioned-set.js';
import { INGRESS_SERVICE } from '../../api/zone-ingress.js';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';

export interface ZoneLinkOptions {
  /** The global, or each of its replicas: tried in turn until one welcomes the zone. */
  readonly endpoints: readonly GlobalEndpoint[];
  /**
   * The trust domain of this zone's workloads: the global's (`endpoints[].trustDomain`) under one mesh root,
   * its own for a zone with its own PKI, whose roots then travel as `trust` records for federation.
   */
  readonly workloadTrustDomain?: string;
  readonly zone: string;
  readonly dataDir: string;
  /** The zone token, needed only for the first join. */
  readonly token: string | undefined;
  readonly maxStalenessMs: number | undefined;
  /** The export decision (exports.ts), shared with the watch hub's view for the zone ingress. */
  readonly exports: ZoneExports;
  readonly ingressAddresses: readonly string[];
  readonly registry: ServiceRegistry;
  readonly trustBundlePem: () => string;
  readonly log: Logger;
  /** The mesh-wide policies changed (the hub pushes them to agents). */
  readonly onPoliciesChanged: () => void;
  /** Another zone's roots came, changed or left (`trust` records): federated bundles are recomputed. */
  readonly onTrustChanged?: () => void;
  /** Other zones' services or ingresses changed (control-plane.ts refreshes its MeshView). */
  readonly onCatalogueChanged?: () => void;
  /** The mesh-wide export default changed: any service's export may have (the hub recomputes the ingress's view). */
  readonly onExportsChanged?: () => void;
  readonly backoff?: BackoffOptions;
}

export interface ZoneLinkStatus {
  readonly global: string;
  readonly connected: boolean;
  readonly globalEpoch: string | undefined;
  /** Since when the catalogue has not been confirmed by a live stream (absent while connected). */
  readonly staleSince?: string;
  readonly staleMs: number;
  /** Past the maximum staleness: the remote records are withdrawn until the global is back. */
  readonly expired: boolean;
  readonly catalogue: Readonly<Record<DownKind, { version: number; records: number }>>;
  readonly exported: Readonly<Record<UpKind, { version: number; sent: number; acked: number; records: number }>>;
  readonly lastError: string | undefined;
}

/** A zone certificate with less than this left is renewed (half the global's default 24 h lifetime). */
export const RENEW_WHEN_LEFT_MS = 12 * 3_600_000;
/** How often the zone certificate's remaining life is checked. */
export const RENEW_CHECK_MS = 10 * 60_000;

export const ZONE_LINK_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 200, maxMs: 10_000 });

export class ZoneLink {
  private readonly outbox: Record<UpKind, VersionedSet<unknown>>;
  private readonly catalogue: CatalogueFile;
  private readonly epoch = randomBytes(12).toString('base64url');
  private readonly backoff: Backoff;
  private credentials: ZoneCredentials | undefined;
  private session: ClientHttp2Session | undefined;
  private lines: LineStream | undefined;
  private welcomed = false;
  private sent = { service: 0, ingress: 0, trust: 0 } as Record<UpKind, number>;
  private acked = { service: 0, ingress: 0, trust: 0 } as Record<UpKind, number>;
  private staleSince = Date.now();
  private lastError: string | undefined;
  private lastSentAt = 0;
  private leaseMs = 30_000;
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly dirtyServices = new Set<string>();
  private readonly exportConflicts = new Set<string>();
  private flushQueued = false;
  private validPolicies: readonly TrafficPermission[] = [];
  private readonly unsubscribe: () => void;
  private endpointIndex = 0;
  private pingPending = false;
  /** One renew/PING loop per welcome: a loop of an earlier stream stops instead of running beside it. */
  private renewLoop = 0;

  private get endpoint(): GlobalEndpoint {
    return this.options.endpoints[this.endpointIndex % this.options.endpoints.length] as GlobalEndpoint;
  }

  /** The next replica, after one did not take the zone (unreachable, a follower, or a stream that ended unwelcomed). */
  private nextEndpoint(): void {
    this.endpointIndex = (this.endpointIndex + 1) % this.options.endpoints.length;
  }

  constructor(private readonly options: ZoneLinkOptions) {
    this.outbox = { service: new VersionedSet(), ingress: new VersionedSet(), trust: new VersionedSet() };
    this.catalogue = new CatalogueFile(options.dataDir, options.log);
    this.backoff = new Backoff(options.backoff ?? ZONE_LINK_BACKOFF);
    this.unsubscribe = options.registry.subscribe((event) => this.serviceChanged(event.namespace, event.service));
  }

  /** Loads the kept catalogue and the zone's credentials (joining with the token if it has none), then connects. */
  async start(): Promise<void> {
    await this.catalogue.load();
    // Decided before the hub exists (control-plane.ts builds it after start): no change to announce.
    this.options.exports.setFallback(this.catalogue.exportDefault);
    // Stale since the last confirmation before a restart, not since the restart.
    this.staleSince = this.catalogue.confirmedAt ?? Date.now();
    this.refreshPolicies();
    this.credentials = await loadZoneCredentials(this.options.dataDir);
    if (this.credentials === undefined && this.options.token === undefined) {
      throw new TrellisError(CODE.ZONE_TOKEN_INVALID, `zone "${this.options.zone}" has not joined the global control plane yet: give --global-token-file (from \`trellis zone token create --zone ${this.options.zone}\`)`, { side: 'input' });
    }
    if (this.options.ingressAddresses.length > 0) this.outbox.ingress.set(`${this.options.zone}/default`, { zone: this.options.zone, addresses: this.options.ingressAddresses });
    this.trustChanged();
    this.recomputeAll();
    void this.connect();
    // The zone certificate is renewed while the stream stays up too (a TLS session outlives its certificate).
    const renewal = setInterval(() => {
      if (this.credentials !== undefined) void this.renewIfDue().catch((err: unknown) => (this.lastError = describeError(err)));
    }, RENEW_CHECK_MS);
    renewal.unref();
    this.timers.add(renewal);
  }

  /** The zone's trust bundle changed (root rotation): the global and the other zones get it. */
  trustChanged(): void {
    const td = this.options.workloadTrustDomain ?? this.endpoint.trustDomain;
    this.outbox.trust.set(`${this.options.zone}/${td}`, { zone: this.options.zone, trustDomain: td, rootsPem: this.options.trustBundlePem() });
    this.sendUp();
  }

  /** Other zones' records of `kind` as this zone serves them (none past the maximum staleness). */
  records(kind: Exclude<DownKind, 'policy'>): [string, unknown][] {
    return this.expired() ? [] : [...this.catalogue.replicas[kind].records()];
  }

  /** The mesh-wide policies from the global that validate here. */
  policies(): readonly TrafficPermission[] {
    return this.validPolicies;
  }

  /** The HTTP/2 session of the sync stream while it is up: golden-upload.ts sends its requests on it. */
  liveSession = (): ClientHttp2Session | undefined => (this.welcomed && this.lines?.isClosed === false && this.session?.destroyed === false ? this.session : undefined);
  status(): ZoneLinkStatus {
    const connected = this.welcomed && this.lines?.isClosed === false;
    const staleMs = connected ? 0 : Date.now() - this.staleSince;
    return {
      global: this.endpoint.url.toString(),
      connected,
      globalEpoch: this.catalogue.globalEpoch,
      ...(connected ? {} : { staleSince: new Date(this.staleSince).toISOString() }),
      staleMs,
      expired: this.expired(),
      catalogue: Object.fromEntries(DOWN_KINDS.map((k) => [k, { version: this.catalogue.replicas[k].version, records: this.catalogue.replicas[k].size }])) as ZoneLinkStatus['catalogue'],
      exported: Object.fromEntries(UP_KINDS.map((k) => [k, { version: this.outbox[k].version, sent: this.sent[k], acked: this.acked[k], records: this.outbox[k].size }])) as ZoneLinkStatus['exported'],
      lastError: this.lastError,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.lines?.close();
    this.session?.destroy();
    await this.catalogue.close();
  }

  private expired(): boolean {
    const max = this.options.maxStalenessMs;
    const connected = this.welcomed && this.lines?.isClosed === false;
    return max !== undefined && !connected && Date.now() - this.staleSince > max;
  }

  private later(ms: number, work: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) work();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    try {
      await this.renewIfDue();
      const session = await openSession(this.endpoint, this.credentials);
      if (this.closed) {
        session.destroy();
        return;
      }
      this.session = session;
      this.pingPending = false;
      session.on('error', () => undefined);
      const stream = session.request({ ':method': 'POST', ':path': ZONE_SYNC_PATHS.sync, 'content-type': 'application/x-ndjson' });
      this.welcomed = false;
      this.lines = new LineStream(stream, ZONE_SYNC_LIMITS.maxMessageBytes, {
        onLine: (line, bytes) => this.receive(line, bytes),
        onClose: (err) => this.streamClosed(session, err),
      });
      const hello = { t: 'hello', protocol: ZONE_SYNC_PROTOCOL_VERSION, zone: this.options.zone, epoch: this.epoch, ...(this.catalogue.globalEpoch === undefined ? {} : { globalEpoch: this.catalogue.globalEpoch }), down: this.catalogue.versions() };
      this.lines.send([`${JSON.stringify(hello)}\n`]);
    } catch (err) {
      this.lastError = describeError(err);
      this.options.log.warn({ err: this.lastError, global: this.endpoint.url.host }, 'cannot connect to the global control plane; the zone keeps its last catalogue and retries');
      this.nextEndpoint();
      this.later(this.backoff.next(), () => void this.connect());
    }
  }

  /** Joins with the token the first time (retried like a connection: the global may be down), renews at half-life. */
  private async renewIfDue(): Promise<void> {
    const current = this.credentials;
    if (current === undefined) {
      this.credentials = await obtainZoneCredentials(this.endpoint, this.options.dataDir, this.options.zone, { token: this.options.token ?? '' });
      this.options.log.info({ zone: this.options.zone, notAfter: this.credentials.notAfter.toISOString() }, 'joined the global control plane');
      return;
    }
    const issued = current.notAfter.getTime();
    // Renew once less than half of a day-long certificate is left (the global signs them for 24 h by default).
    if (issued - Date.now() > RENEW_WHEN_LEFT_MS) return;
    this.credentials = await obtainZoneCredentials(this.endpoint, this.options.dataDir, this.options.zone, { current });
    this.options.log.info({ notAfter: this.credentials.notAfter.toISOString() }, 'zone certificate renewed');
  }

  private streamClosed(session: ClientHttp2Session, err: Error | undefined): void {
    session.close();
    if (this.welcomed) {
      this.staleSince = Date.now();
      this.catalogue.confirm(this.staleSince);
    } else {
      this.nextEndpoint();
    }
    this.welcomed = false;
    for (const kind of DOWN_KINDS) this.catalogue.replicas[kind].abort();
    if (err !== undefined) this.lastError = describeError(err);
    if (this.closed) return;
    this.options.log.warn({ err: this.lastError }, 'the sync stream to the global control plane ended; the zone keeps its last catalogue and reconnects');
    this.later(this.backoff.next(), () => void this.connect());
  }

  private receive(line: string, bytes: number): void {
    const message = parseDownMessage(line);
    switch (message.t) {
      case 'welcome': {
        this.welcomed = true;
        this.backoff.reset();
        this.lastError = undefined;
        this.leaseMs = message.leaseMs;
        this.catalogue.setGlobal(message.globalEpoch, message.exportDefault);
        this.sent = { ...message.applied };
        this.acked = { ...message.applied };
        if (this.options.exports.setFallback(message.exportDefault)) {
          this.recomputeAll();
          this.options.onExportsChanged?.();
        }
        this.sendUp(!message.resume);
        this.scheduleRenew();
        return;
      }
      case 'delta': {
        const applied = this.catalogue.replicas[message.kind].receive(message, bytes);
        if (applied === undefined) return;
        this.catalogue.changed();
        if (message.kind === 'policy') this.refreshPolicies();
        if (message.kind === 'trust') this.options.onTrustChanged?.();
        if (message.kind === 'service' || message.kind === 'ingress') this.options.onCatalogueChanged?.();
        return;
      }
      case 'ack':
        this.acked[message.kind] = Math.max(this.acked[message.kind], message.version);
        return;
      case 'error':
        this.lastError = `${message.message} [${message.code}]`;
        this.options.log.warn({ code: message.code, err: message.message }, 'the global control plane refused this zone\'s stream');
    }
  }

  /**
   * Every lease/3: a renew when nothing else was sent, and an HTTP/2 PING; a PING still unanswered at the
   * next tick means the global (or the path to it) is gone without a reset, and the session is dropped.
   */
  private scheduleRenew(loop = ++this.renewLoop): void {
    this.later(Math.max(50, Math.floor(this.leaseMs / 3)), () => {
      if (loop !== this.renewLoop || !this.welcomed || this.lines?.isClosed !== false) return;
      if (Date.now() - this.lastSentAt >= this.leaseMs / 3 - 10) this.send([`{"t":"renew"}\n`]);
      const session = this.session;
      if (session !== undefined && !session.destroyed) {
        if (this.pingPending) {
          this.lastError = 'the global control plane stopped answering PINGs';
          session.destroy();
          return;
        }
        this.pingPending = true;
        if (!session.ping(() => (this.pingPending = false))) this.pingPending = false;
      }
      this.scheduleRenew(loop);
    });
  }

  private send(lines: readonly string[]): void {
    this.lines?.send(lines);
    this.lastSentAt = Date.now();
  }

  /** Sends what the global has not seen, from the versions it holds, or whole sets (`reset`: a new epoch). */
  private sendUp(reset = false): void {
    if (!this.welcomed || this.lines === undefined || this.lines.isClosed) return;
    for (const kind of UP_KINDS) {
      const set = this.outbox[kind];
      const delta = reset ? set.snapshot() : set.since(this.sent[kind]);
      if (!delta.reset && delta.to === this.sent[kind]) continue;
      this.send(chunkDelta(kind, delta, false, ZONE_SYNC_LIMITS, (err) => this.options.log.error({ err: describeError(err) }, 'an exported record is too large to send; the others are sent')));
      this.sent[kind] = delta.to;
    }
  }

  private serviceChanged(namespace: string, service: string): void {
    this.dirtyServices.add(`${namespace}/${service}`);
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      for (const key of this.dirtyServices) {
        const slash = key.indexOf('/');
        this.exportOne(key.slice(0, slash), key.slice(slash + 1));
      }
      this.dirtyServices.clear();
      this.sendUp();
    });
  }

  private exportOne(namespace: string, name: string): void {
    if (namespace === this.endpoint.rootNamespace && name === INGRESS_SERVICE) {
      this.ingressChanged();
      return;
    }
    const key = exportKey(this.options.zone, namespace, name);
    const { exported, conflict } = this.options.exports.decide(namespace, name);
    this.reportConflict(`${namespace}/${name}`, conflict);
    const record = exported
      ? exportedService(this.options.registry, this.options.workloadTrustDomain ?? this.endpoint.trustDomain, this.options.zone, namespace, name)
      : undefined;
    if (record === undefined) this.outbox.service.remove(key);
    else this.outbox.service.set(key, record);
  }

  /** The zone's registered ingresses, its `<zone>/registered` ingress record (exports.ts). */
  private ingressChanged(): void {
    const key = `${this.options.zone}/registered`;
    const record = registeredIngresses(this.options.registry, this.endpoint.rootNamespace, this.options.zone);
    if (record === undefined) this.outbox.ingress.remove(key);
    else this.outbox.ingress.set(key, record);
  }

  /** Instances of one service that disagree on export: logged once when it starts, counted while it lasts. */
  private reportConflict(service: string, conflict: boolean): void {
    if (conflict === this.exportConflicts.has(service)) return;
    if (conflict) {
      this.exportConflicts.add(service);
      this.options.log.warn({ service, code: CODE.ZONE_EXPORT_CONFLICT }, `instances of ${service} disagree on --export / --no-export: the service is not exported until they agree`);
    } else this.exportConflicts.delete(service);
  }

  private recomputeAll(): void {
    const present = new Set(this.options.registry.meshServices().map((s) => exportKey(this.options.zone, s.namespace, s.service)));
    for (const [key] of [...this.outbox.service.records()]) if (!present.has(key)) this.outbox.service.remove(key);
    for (const s of this.options.registry.meshServices()) this.exportOne(s.namespace, s.service);
    this.sendUp();
  }

  private refreshPolicies(): void {
    const objects = [...this.catalogue.replicas.policy.records()].map(([, p]) => p);
    try {
      this.validPolicies = validatePolicyObjects(objects, 'global control plane', { rootNamespace: this.endpoint.rootNamespace });
    } catch (err) {
      this.options.log.error({ err: describeError(err) }, 'the mesh-wide policies from the global control plane do not validate here; the previous ones stay in force');
      return;
    }
    this.options.onPoliciesChanged();
  }
}
