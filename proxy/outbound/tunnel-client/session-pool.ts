/**
 * The outbound side's pool of mTLS HTTP/2 tunnel sessions, a few per destination endpoint.
 *
 * Sessions are opened ahead of need (`warm`, when config arrives) so that no TLS handshake sits on the
 * request path in steady state; a stream goes to the least busy ready session of its group, and another
 * session is opened when all are at the stream bound. TLS session tickets are kept per group, so a
 * reconnect resumes instead of doing a full handshake. Each session is kept alive with PINGs; a GOAWAY
 * takes it out of rotation (its streams finish) and a replacement is opened; a failed or lost session is
 * reopened with jittered exponential backoff, and the endpoint is reported to the load balancer.
 *
 * A new identity (`setIdentity`) bumps the generation: new sessions use it at once, and the old ones keep
 * serving until a new one is ready in their group, then drain (finish their streams, then close).
 *
 * The server's certificate is checked beyond the chain: its SPIFFE ID must name the destination service,
 * so a mis-routed connection (wrong address, stale endpoint) is refused rather than trusted.
 *
 * This file holds the pool's policy (how many sessions, which one a stream takes, when to open, back off,
 * retire or drop); a group's state is session-group.ts, and opening one session is session-dial.ts.
 */
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders, ClientSessionRequestOptions } from 'node:http2';
import type { Logger } from 'pino';
import { TrellisError } from '../../../common/errors.js';
import type { Endpoint, WorkloadIdentity } from '../../../api/data-plane.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from '../../../common/backoff.js';
import { endpointKey } from '../../core/destination.js';
import type { ProxyLimits } from '../../core/limits.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import { buildTlsMaterial, type TlsMaterial } from '../../core/tls-material.js';
import { CODE } from '../../../common/error-codes.js';
import { closeSession, newGroup, rejectWaiters, servesTarget, unreachable, type PooledSession, type PoolTarget, type SessionGroup, type Waiter } from './session-group.js';
import { dialSession, type DialHost } from './session-dial.js';
import { IngressTransport } from './ingress-transport.js';

export type { PoolTarget } from './session-group.js';

export interface SessionPoolOptions {
  readonly trustDomain: string;
  readonly identity: WorkloadIdentity;
  readonly limits: ProxyLimits;
  /** Sessions kept open per endpoint ahead of need. */
  readonly sessionsPerEndpoint?: number;
  /** Upper bound of sessions per endpoint when all are at their stream bound. */
  readonly maxSessionsPerEndpoint?: number;
  /** Our own bound on concurrent streams per session (the peer's SETTINGS may lower it). */
  readonly maxStreamsPerSession?: number;
  readonly keepaliveIntervalMs?: number;
  readonly keepaliveTimeoutMs?: number;
  readonly backoff?: BackoffOptions;
  readonly logger: Logger;
  readonly metrics: ProxyMetrics;
  /** Told when an endpoint could not be reached (false) or a session to it became ready (true). */
  readonly onEndpointHealth?: (endpointKey: string, ok: boolean) => void;
}

export interface SessionPoolStats {
  readonly groups: number;
  readonly sessions: number;
  readonly readySessions: number;
  readonly activeStreams: number;
}

export class SessionPool {
  private readonly groups = new Map<string, SessionGroup>();
  /** The per-connection lookup without building a key: config endpoint objects → their groups. */
  private readonly byEndpoint = new WeakMap<Endpoint, SessionGroup[]>();
  /** Our record of each session, for `isCurrent` (long-lived lanes ask it before every reuse). */
  private readonly pooledOf = new WeakMap<ClientHttp2Session, PooledSession>();
  private material: TlsMaterial;
  private generation = 0;
  private closed = false;
  private readonly perEndpoint: number;
  private readonly maxPerEndpoint: number;
  private readonly maxStreams: number;
  private readonly keepaliveIntervalMs: number;
  private readonly keepaliveTimeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly log: Logger;
  /** What a dial reads of the pool (the identity in force, read live) and the pool's answers to its sessions' events. */
  private readonly dialHost: DialHost;

  constructor(private readonly options: SessionPoolOptions) {
    this.material = buildTlsMaterial(options.identity);
    this.perEndpoint = Math.max(1, options.sessionsPerEndpoint ?? 2);
    this.maxPerEndpoint = Math.max(this.perEndpoint, options.maxSessionsPerEndpoint ?? 16);
    this.maxStreams = Math.max(1, options.maxStreamsPerSession ?? options.limits.maxStreamsPerSession);
    this.keepaliveIntervalMs = options.keepaliveIntervalMs ?? 30_000;
    this.keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 10_000;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.log = options.logger;
    this.dialHost = this.createDialHost();
  }

  private createDialHost(): DialHost {
    return {
      limits: this.options.limits,
      trustDomain: this.options.trustDomain,
      metrics: this.options.metrics,
      log: this.log,
      maxStreams: this.maxStreams,
      keepaliveIntervalMs: this.keepaliveIntervalMs,
      keepaliveTimeoutMs: this.keepaliveTimeoutMs,
      material: () => this.material,
      generation: () => this.generation,
      sessionReady: (group, pooled, resumed) => this.sessionReady(group, pooled, resumed),
      sessionGoingAway: (group, pooled) => this.sessionGoingAway(group, pooled),
      sessionClosed: (group, pooled) => this.sessionClosed(group, pooled),
      dialRefused: (group) => this.connectFailed(group, false),
      track: (session, pooled) => this.pooledOf.set(session, pooled),
      ingress: new IngressTransport({
        limits: this.options.limits,
        trustDomain: this.options.trustDomain,
        log: this.log,
        material: () => this.material,
        generation: () => this.generation,
        refused: (zone, reason) => this.options.metrics.ingressRefusals.inc({ zone, reason }),
      }),
    };
  }

  /**
   * The set of destinations config names now: opens sessions to new ones ahead of need, and drains groups
   * whose endpoint is no longer named by any target. `onDemand` names destinations that stay valid
   * without being opened ahead of need (their sessions open on first use and are kept while in use), so a
   * sidecar that may reach every service of a large mesh does not hold sessions to all of them.
   */
  warm(targets: readonly PoolTarget[], onDemand: readonly PoolTarget[] = []): void {
    if (this.closed) return;
    const wanted = new Set<string>();
    const dialKeys = new Set<string>();
    for (const target of targets) {
      const group = this.group(target);
      group.retained = true;
      wanted.add(group.key);
      dialKeys.add(endpointKey(target.endpoint));
      this.fill(group);
    }
    for (const target of onDemand) {
      dialKeys.add(endpointKey(target.endpoint));
      const existing = this.existingGroup(target);
      if (existing === undefined || wanted.has(existing.key)) continue;
      existing.retained = false;
      wanted.add(existing.key);
    }
    for (const group of [...this.groups.values()]) {
      if (wanted.has(group.key) || dialKeys.has(endpointKey(group.target.endpoint))) continue;
      this.dropGroup(group, new TrellisError(CODE.TUNNEL_ENDPOINT_REMOVED, `endpoint ${group.key} was removed from config`, { side: 'upstream', retryable: true }));
    }
  }

  /**
   * Opens a stream to the target on a pooled session. Resolves at once when a ready session has room (the
   * steady state); otherwise waits for one being opened, up to the tunnel connect timeout. Rejects with a
   * retryable upstream error when the endpoint cannot be reached: nothing was sent, so another endpoint may be tried.
   */
  async openStream(target: PoolTarget, headers: OutgoingHttpHeaders, options?: ClientSessionRequestOptions): Promise<ClientHttp2Stream> {
    const pooled = this.pickReady(this.group(target)) ?? (await this.waitForSession(this.group(target)));
    return this.request(pooled, headers, options);
  }

  /** The synchronous fast path: a stream on a ready session, or undefined when none has room right now. */
  tryOpenStream(target: PoolTarget, headers: OutgoingHttpHeaders, options?: ClientSessionRequestOptions): ClientHttp2Stream | undefined {
    const pooled = this.pickReady(this.group(target));
    return pooled === undefined ? undefined : this.request(pooled, headers, options);
  }

  /**
   * Whether a stream opened earlier may still be reused: its session is ready, not draining (GOAWAY,
   * retired after a new certificate) and of the current identity. A stream kept open across requests
   * (an HTTP lane) must ask, or it would keep an old session alive past a rotation.
   */
  isCurrent(stream: ClientHttp2Stream): boolean {
    if (this.closed || stream.closed || stream.destroyed) return false;
    const session = stream.session;
    if (session === undefined || session.closed || session.destroyed) return false;
    const pooled = this.pooledOf.get(session as ClientHttp2Session);
    return pooled !== undefined && pooled.ready && !pooled.draining && pooled.generation === this.generation;
  }

  /** New sessions use the new identity at once; old sessions drain once a new one is ready in their group. */
  setIdentity(identity: WorkloadIdentity): void {
    this.material = buildTlsMaterial(identity);
    this.generation += 1;
    for (const group of this.groups.values()) {
      // Tickets were issued to the old identity: resuming one would present the old certificate.
      group.ticket = undefined;
      if (group.retained || group.sessions.some((s) => s.active > 0)) this.fill(group);
    }
  }

  stats(): SessionPoolStats {
    let sessions = 0;
    let ready = 0;
    let active = 0;
    for (const g of this.groups.values()) {
      for (const s of g.sessions) {
        sessions += 1;
        if (s.ready && !s.draining) ready += 1;
        active += s.active;
      }
    }
    return { groups: this.groups.size, sessions, readySessions: ready, activeStreams: active };
  }

  /** Stops opening sessions; closes idle ones now and the rest when their streams finish or after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    const all: PooledSession[] = [];
    for (const group of this.groups.values()) {
      if (group.retryTimer !== undefined) clearTimeout(group.retryTimer);
      rejectWaiters(group, new TrellisError(CODE.TUNNEL_POOL_CLOSED, 'the tunnel pool is shutting down', { side: 'internal' }));
      all.push(...group.sessions);
    }
    await Promise.all(all.map((s) => closeSession(s.session, graceMs)));
    this.groups.clear();
    this.dialHost.ingress.close();
  }

  /** The group for a target if one exists (never creates one). */
  private existingGroup(target: PoolTarget): SessionGroup | undefined {
    for (const g of this.byEndpoint.get(target.endpoint) ?? []) if (servesTarget(g, target) && this.groups.get(g.key) === g) return g;
    return undefined;
  }

  private group(target: PoolTarget): SessionGroup {
    const existing = this.existingGroup(target);
    if (existing !== undefined) return existing;
    const known = this.byEndpoint.get(target.endpoint);
    const group = this.groupByKey(target);
    if (known === undefined) this.byEndpoint.set(target.endpoint, [group]);
    else known.push(group);
    return group;
  }

  private groupByKey(target: PoolTarget): SessionGroup {
    const fresh = newGroup(target, this.material.federation.callerLabelFor(target.endpoint.trustDomain ?? this.material.trustDomain));
    const group = this.groups.get(fresh.key);
    if (group !== undefined) return group;
    this.groups.set(fresh.key, fresh);
    return fresh;
  }

  private pickReady(group: SessionGroup): PooledSession | undefined {
    let best: PooledSession | undefined;
    let bestOld: PooledSession | undefined;
    for (const s of group.sessions) {
      if (!s.ready || s.draining || s.session.closed || s.session.destroyed) continue;
      if (s.active >= s.streamLimit) continue;
      if (s.generation === this.generation) {
        if (best === undefined || s.active < best.active) best = s;
      } else if (bestOld === undefined || s.active < bestOld.active) {
        bestOld = s;
      }
    }
    const chosen = best ?? bestOld;
    if (chosen === undefined || chosen.active > 0) this.maybeGrow(group, chosen === undefined);
    return chosen;
  }

  /** Opens another session when every ready one is busy (or at its bound), within the per-endpoint cap. */
  private maybeGrow(group: SessionGroup, allFull: boolean): void {
    if (this.closed || group.connecting > 0 || group.retryTimer !== undefined) return;
    if (!allFull) return;
    const live = group.sessions.filter((s) => !s.draining).length;
    if (live < this.maxPerEndpoint) this.connect(group);
  }

  private waitForSession(group: SessionGroup): Promise<PooledSession> {
    if (this.closed) return Promise.reject(new TrellisError(CODE.TUNNEL_POOL_CLOSED, 'the tunnel pool is shutting down', { side: 'internal' }));
    if (group.connecting === 0 && group.retryTimer === undefined) this.connect(group);
    if (group.connecting === 0 && group.retryTimer !== undefined && group.failures > 0) {
      // The endpoint failed recently and is backing off: fail fast so the caller tries another endpoint.
      return Promise.reject(unreachable(group, 'it failed recently and is backing off'));
    }
    return new Promise<PooledSession>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = group.waiters.indexOf(waiter);
          if (i >= 0) group.waiters.splice(i, 1);
          reject(unreachable(group, `no session within ${this.options.limits.tunnelConnectTimeoutMs} ms`));
        }, this.options.limits.tunnelConnectTimeoutMs),
      };
      group.waiters.push(waiter);
    });
  }

  private request(pooled: PooledSession, headers: OutgoingHttpHeaders, options?: ClientSessionRequestOptions): ClientHttp2Stream {
    const stream = pooled.session.request(headers, options);
    pooled.active += 1;
    stream.once('close', () => {
      pooled.active -= 1;
    });
    return stream;
  }

  private fill(group: SessionGroup): void {
    if (this.closed || group.retryTimer !== undefined) return;
    const current = group.sessions.filter((s) => s.generation === this.generation && !s.draining).length;
    for (let i = current + group.connecting; i < this.perEndpoint; i += 1) this.connect(group);
  }

  private connect(group: SessionGroup): void {
    if (!this.closed) dialSession(group, this.dialHost);
  }

  /** A session passed its identity check: count it, tell the balancer, retire older ones, serve waiters. */
  private sessionReady(group: SessionGroup, pooled: PooledSession, resumed: boolean): void {
    group.failures = 0;
    this.options.metrics.tunnelHandshakes.inc({ direction: 'outbound', result: 'ok', reason: resumed ? 'resumed' : 'full' });
    this.options.metrics.tunnelSessions.inc({ direction: 'outbound' });
    this.options.onEndpointHealth?.(endpointKey(group.target.endpoint), true);
    if (pooled.generation === this.generation) this.retireOldGenerations(group);
    this.serveWaiters(group);
    this.retryPeers(group);
  }

  /**
   * The endpoint answers again: its other groups (behind one zone ingress, every remote service) dial now,
   * not when their backoff ends; else one that failed in an outage fails fast ("backing off") for up to
   * the maximum backoff after the ingress came back, refusing a failover the balancer already allows.
   */
  private retryPeers(group: SessionGroup): void {
    const key = endpointKey(group.target.endpoint);
    for (const other of this.groups.values()) {
      if (other === group || other.retryTimer === undefined || endpointKey(other.target.endpoint) !== key) continue;
      clearTimeout(other.retryTimer);
      other.retryTimer = undefined;
      if (other.retained) this.fill(other);
      else if (other.waiters.length > 0) this.connect(other);
    }
  }

  /** The peer is going away: no new streams on the session; those open may finish. Replace it now. */
  private sessionGoingAway(group: SessionGroup, pooled: PooledSession): void {
    pooled.draining = true;
    if (!this.closed && (group.retained || group.waiters.length > 0)) this.fill(group);
  }

  private sessionClosed(group: SessionGroup, pooled: PooledSession): void {
    if (pooled.ready) this.options.metrics.tunnelSessions.dec({ direction: 'outbound' });
    else if (!this.closed) this.connectFailed(group);
    if (this.closed) return;
    if (group.retained && group.retryTimer === undefined) this.fill(group);
    else if (group.waiters.length > 0 && group.connecting === 0 && group.retryTimer === undefined) this.connect(group);
  }

  /** A session closed before it was ever ready: back off, tell the balancer, fail waiters if nothing else is coming. */
  private connectFailed(group: SessionGroup, count = true): void {
    group.failures += 1;
    // A dial refused before connecting was counted with its own reason.
    if (count) this.options.metrics.tunnelHandshakes.inc({ direction: 'outbound', result: 'failed', reason: 'connect' });
    this.options.onEndpointHealth?.(endpointKey(group.target.endpoint), false);
    if (group.connecting === 0 && !group.sessions.some((s) => s.ready && !s.draining)) {
      rejectWaiters(group, unreachable(group, 'the connection failed'));
    }
    if (this.closed || group.retryTimer !== undefined) return;
    const delay = backoffDelay(group.failures - 1, this.backoff);
    group.retryTimer = setTimeout(() => {
      group.retryTimer = undefined;
      if (this.closed || !this.groups.has(group.key)) return;
      if (group.retained) this.fill(group);
    }, delay);
    group.retryTimer.unref();
  }

  private retireOldGenerations(group: SessionGroup): void {
    for (const s of group.sessions) {
      if (s.generation !== this.generation && !s.draining) {
        s.draining = true;
        // close() is graceful: open streams finish, no new ones start.
        s.session.close();
      }
    }
  }

  private serveWaiters(group: SessionGroup): void {
    while (group.waiters.length > 0) {
      const pooled = this.pickReady(group);
      if (pooled === undefined) return;
      const waiter = group.waiters.shift() as Waiter;
      clearTimeout(waiter.timer);
      // Count the stream now so the next waiter sees this session's load.
      waiter.resolve(pooled);
    }
  }

  private dropGroup(group: SessionGroup, err: Error): void {
    this.groups.delete(group.key);
    if (group.retryTimer !== undefined) clearTimeout(group.retryTimer);
    group.retryTimer = undefined;
    group.retained = false;
    rejectWaiters(group, err);
    for (const s of group.sessions) {
      s.draining = true;
      if (!s.session.closed) s.session.close();
    }
  }
}
