/**
 * How long a registered instance outlives its agent's watch: the registry's clock for each instance.
 *
 * The watch stream is the lease: while it is open the instance is `connected`. When it closes the instance
 * is in `grace` (still healthy) for `disconnectGraceMs`, so a reconnect blip empties no service; then
 * `gone` (listed, unhealthy) until `leaseMs` after the close, when it is removed: an instance no agent
 * holds must not stay in the registry, the store and every subscriber's config forever. A reconnect
 * before then takes the instance back, with nothing for callers to notice.
 *
 * After a control-plane restart every stored instance starts in `grace` with a fresh lease, measured from
 * the start: agents reconnect and reclaim theirs within it (a restart empties no service), and instances
 * nobody reclaims (a workload that went while the control plane was down) are removed when it ends
 * instead of being restored at every boot. The lease after a restart is never shorter than the
 * startup grace.
 *
 * A close is matched to the connect it ends by a token: a late close of a replaced stream (the agent
 * reconnected before the old connection's close arrived) must not start the lease of the new one.
 */

export type Liveness = 'connected' | 'grace' | 'gone';

export interface LeaseTimes {
  /** Healthy this long after the watch closes. */
  readonly disconnectGraceMs: number;
  /** Restored instances keep their stored state this long after a restart. */
  readonly startupGraceMs: number;
  /** Removed this long after the watch closes (after a restart: after the start). */
  readonly leaseMs: number;
}

interface Lease {
  liveness: Liveness;
  token: number;
  staleTimer: NodeJS.Timeout | undefined;
  expireTimer: NodeJS.Timeout | undefined;
}

export class InstanceLeases {
  private readonly leases = new Map<string, Lease>();
  private nextToken = 1;

  /**
   * @param onStale the grace ended: the instance is now `gone` (unhealthy).
   * @param onExpired the lease ended: the instance must be removed (its lease is already forgotten).
   */
  constructor(
    private readonly times: LeaseTimes,
    private readonly onStale: (id: string) => void,
    private readonly onExpired: (id: string) => void,
  ) {}

  /** The instance's watch opened; returns the token its close must name. */
  connect(id: string): number {
    const lease = this.leaseOf(id);
    this.clear(lease);
    lease.liveness = 'connected';
    lease.token = this.nextToken++;
    return lease.token;
  }

  /** A stored instance after a restart: in grace, with a fresh lease. */
  restore(id: string): void {
    const lease = this.leaseOf(id);
    this.clear(lease);
    lease.liveness = 'grace';
    lease.token = 0;
    this.arm(id, lease, this.times.startupGraceMs, Math.max(this.times.startupGraceMs, this.times.leaseMs));
  }

  /** The watch that `token` names closed; false when a newer watch holds the instance (nothing changes). */
  disconnect(id: string, token: number): boolean {
    const lease = this.leases.get(id);
    if (lease === undefined || lease.token !== token || lease.liveness !== 'connected') return false;
    lease.liveness = 'grace';
    this.arm(id, lease, this.times.disconnectGraceMs, Math.max(this.times.disconnectGraceMs, this.times.leaseMs));
    return true;
  }

  liveness(id: string): Liveness {
    return this.leases.get(id)?.liveness ?? 'gone';
  }

  forget(id: string): void {
    const lease = this.leases.get(id);
    if (lease === undefined) return;
    this.clear(lease);
    this.leases.delete(id);
  }

  close(): void {
    for (const lease of this.leases.values()) this.clear(lease);
  }

  private leaseOf(id: string): Lease {
    let lease = this.leases.get(id);
    if (lease === undefined) this.leases.set(id, (lease = { liveness: 'connected', token: 0, staleTimer: undefined, expireTimer: undefined }));
    return lease;
  }

  private arm(id: string, lease: Lease, staleMs: number, expireMs: number): void {
    this.clear(lease);
    // Both timers are unref'd: a lease never keeps a stopping control plane alive.
    lease.staleTimer = setTimeout(() => {
      lease.staleTimer = undefined;
      if (lease.liveness !== 'grace') return;
      lease.liveness = 'gone';
      this.onStale(id);
    }, staleMs);
    lease.staleTimer.unref();
    lease.expireTimer = setTimeout(() => {
      if (this.leases.get(id) !== lease || lease.liveness === 'connected') return;
      this.forget(id);
      this.onExpired(id);
    }, expireMs);
    lease.expireTimer.unref();
  }

  private clear(lease: Lease): void {
    clearTimeout(lease.staleTimer);
    clearTimeout(lease.expireTimer);
    lease.staleTimer = lease.expireTimer = undefined;
  }
}
