/**
 * The JSON the web UI reads from the global control plane's admin port (`/ui/api/*`): every zone with its
 * sync state (online, offline after its lease, connected now), lag and records, and the call graph merged
 * from the zones' golden-metrics reports (zone-golden.ts). The same UI bundle as a zone's reads it; with
 * `mode: "global"` it shows only the views a global has (zones and the graph).
 */
import { jsonReply, type AdminRoute } from '../../common/admin-http.js';
import { WINDOW_SLOTS } from '../golden/golden-window.js';
import { UP_KINDS } from '../zone-sync/protocol.js';
import type { GlobalState } from './global-state.js';
import type { ZoneGoldenBoard } from './zone-golden.js';
import { adminCredentialCheck, isLoopback, uiRoutes } from '../golden/ui-static.js';

export interface GlobalUiSources {
  readonly state: () => GlobalState;
  readonly trustDomain: string;
  readonly role: 'single' | 'leader' | 'follower';
  readonly leaseMs: number;
  /** Absent on a follower: zones report to the leader, whose memory this is. */
  readonly golden: ZoneGoldenBoard | undefined;
  readonly now?: () => number;
}

function zonesView(s: GlobalUiSources): unknown[] {
  const now = (s.now ?? Date.now)();
  const state = s.state();
  const reports = new Map((s.golden?.zones() ?? []).map((r) => [r.zone, r]));
  return state.zoneNames().map((name) => {
    const z = state.status(name);
    if (z === undefined) return { name };
    return {
      name,
      state: z.state,
      connected: z.connected,
      lastSeenAgoMs: Math.max(0, now - z.lastSeen),
      ...(z.offlineSince === undefined ? {} : { offlineSince: new Date(z.offlineSince).toISOString() }),
      lagMs: Math.max(0, ...UP_KINDS.map((k) => z.lagMs[k])),
      services: z.records.service,
      connects: z.connects,
      leaseExpiries: z.leaseExpiries,
      golden: reports.get(name) ?? null,
    };
  });
}

export function globalUiApiRoutes(s: GlobalUiSources): Record<string, AdminRoute> {
  return {
    '/ui/api/overview': () => jsonReply(200, {
      zone: 'global',
      mode: 'global',
      role: s.role,
      trustDomain: s.trustDomain,
      leaseMs: s.leaseMs,
      windowMinutes: WINDOW_SLOTS,
      globalEpoch: s.state().globalEpoch,
      zones: zonesView(s),
    }),
    '/ui/api/edges': () => {
      if (s.golden === undefined) return jsonReply(200, { zone: 'global', windowMs: 0, edges: [], note: 'a follower: zones report golden metrics to the leader' });
      return jsonReply(200, { zone: 'global', ...s.golden.edges() });
    },
  };
}

/** The UI's files and JSON for the global's admin port: behind the admin credential unless it binds to loopback. */
export function globalUiRoutes(
  config: { readonly trustDomain: string; readonly zoneLeaseMs: number; readonly admin: { readonly host: string } },
  deps: { readonly state: () => GlobalState; readonly role: GlobalUiSources['role']; readonly golden: ZoneGoldenBoard | undefined; readonly adminToken: string },
): Record<string, AdminRoute> {
  const api = globalUiApiRoutes({ state: deps.state, trustDomain: config.trustDomain, role: deps.role, leaseMs: config.zoneLeaseMs, golden: deps.golden });
  return uiRoutes(api, isLoopback(config.admin.host) ? {} : { guard: adminCredentialCheck(deps.adminToken) });
}
