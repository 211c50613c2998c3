/**
 * The global control plane's Prometheus metrics: sync lag per zone and kind, records per kind, zones by
 * state, stream reconnects, lease expiries and refused messages by code.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { DOWN_KINDS, UP_KINDS } from '../zone-sync/protocol.js';
import type { GlobalState } from './global-state.js';

export class GlobalMetrics {
  readonly reconnects: Counter<'zone'>;
  readonly leaseExpiries: Counter<'zone'>;
  readonly refused: Counter<'zone' | 'code'>;
  readonly storeWrites: Counter<'result'>;

  constructor(registry: Registry, current: () => GlobalState) {
    const registers = [registry];
    new Gauge({
      name: 'trellis_global_sync_lag_seconds',
      help: 'Per zone and kind: from the zone\'s newest change in a delta to the global applying it',
      labelNames: ['zone', 'kind'],
      registers,
      collect() {
        const state = current();
        for (const name of state.zoneNames()) {
          const status = state.status(name);
          if (status !== undefined) for (const kind of UP_KINDS) this.set({ zone: name, kind }, status.lagMs[kind] / 1000);
        }
      },
    });
    new Gauge({
      name: 'trellis_global_catalogue_records',
      help: 'Records in the catalogue by kind (online zones\' records, and the mesh-wide policies)',
      labelNames: ['kind'],
      registers,
      collect() {
        const state = current();
        for (const kind of DOWN_KINDS) this.set({ kind }, state.catalogue[kind].size);
      },
    });
    new Gauge({
      name: 'trellis_global_zones',
      help: 'Known zones by state (online, offline) and connected now',
      labelNames: ['state'],
      registers,
      collect() {
        const state = current();
        const statuses = state.zoneNames().map((n) => state.status(n));
        this.set({ state: 'online' }, statuses.filter((s) => s?.state === 'online').length);
        this.set({ state: 'offline' }, statuses.filter((s) => s?.state === 'offline').length);
        this.set({ state: 'connected' }, statuses.filter((s) => s?.connected === true).length);
      },
    });
    this.reconnects = new Counter({ name: 'trellis_global_zone_reconnects_total', help: 'Zone sync streams opened after the first, per zone', labelNames: ['zone'], registers });
    this.leaseExpiries = new Counter({ name: 'trellis_global_zone_lease_expiries_total', help: 'Zones that went offline because their lease lapsed', labelNames: ['zone'], registers });
    this.refused = new Counter({ name: 'trellis_global_sync_refused_total', help: 'Zone sync messages refused (the stream ended), by zone and error code', labelNames: ['zone', 'code'], registers });
    this.storeWrites = new Counter({ name: 'trellis_global_store_writes_total', help: 'Writes of zone state to the store, by result (ok, error)', labelNames: ['result'], registers });
  }
}
