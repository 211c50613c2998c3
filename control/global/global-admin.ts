/**
 * The global control plane's admin listener (plain HTTP, loopback by default): `/healthz`, `/ready`,
 * `/metrics`, `/zones` (every zone: state, versions, lag, records), `/zones/<name>` (one zone, with its
 * exported services) and `/catalogue` (the merged catalogue, every kind). `trellis zone list|describe`
 * read these. The web UI under `/ui/` (global-ui-api.ts).
 */
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { createAdminHttpServer, jsonReply, textReply, type AdminRoute } from '../../common/admin-http.js';
import { DOWN_KINDS, ZONE_NAME, ownerOf } from '../zone-sync/protocol.js';
import type { GlobalState } from './global-state.js';

export interface GlobalAdminSources {
  /** The state to show: the running one (leader, single global), or the store's as last read (follower). */
  readonly state: () => GlobalState;
  readonly metrics: Registry;
  readonly ready: () => boolean;
  readonly trustDomain: string;
  readonly role: 'single' | 'leader' | 'follower';
  /** The web UI's files and JSON (global-ui-api.ts, with ui-static.ts's credential guard when exposed). */
  readonly ui?: Readonly<Record<string, AdminRoute>>;
}

function catalogue(state: GlobalState): ReturnType<typeof jsonReply> {
  return jsonReply(200, Object.fromEntries(DOWN_KINDS.map((k) => [k, { version: state.catalogue[k].version, records: Object.fromEntries(state.catalogue[k].records()) }])));
}

export function createGlobalAdmin(sources: GlobalAdminSources): Server {
  const zones = (state: GlobalState): unknown[] => state.zoneNames().map((n) => state.status(n));
  return createAdminHttpServer({
    routes: {
      '/healthz': () => jsonReply(200, { status: 'ok' }),
      '/ready': () => {
        const ready = sources.ready();
        const state = sources.state();
        return jsonReply(ready ? 200 : 503, { ready, mode: 'global', role: sources.role, trustDomain: sources.trustDomain, globalEpoch: state.globalEpoch, zones: state.zoneNames().length });
      },
      '/metrics': () =>
        sources.metrics.metrics().then(
          (text) => textReply(200, text, sources.metrics.contentType),
          () => jsonReply(500, { error: 'metrics unavailable' }),
        ),
      '/zones': () => jsonReply(200, { role: sources.role, globalEpoch: sources.state().globalEpoch, now: Date.now(), zones: zones(sources.state()) }),
      '/catalogue': () => catalogue(sources.state()),
      ...sources.ui,
    },
    lookup: (path) => {
      const name = path.startsWith('/zones/') ? path.slice('/zones/'.length) : '';
      if (!ZONE_NAME.test(name)) return undefined;
      return () => {
        const state = sources.state();
        const status = state.status(name);
        if (status === undefined) return jsonReply(404, { error: `no zone "${name}"` });
        const services = [...state.catalogue.service.records()].filter(([key]) => ownerOf(key) === name).map(([, r]) => r);
        const ingresses = [...state.catalogue.ingress.records()].filter(([key]) => ownerOf(key) === name).map(([, r]) => r);
        return jsonReply(200, { now: Date.now(), ...status, services, ingresses });
      };
    },
    methodNotAllowed: jsonReply(405, { error: 'only GET' }),
    notFound: (path) => jsonReply(404, { error: `no ${path}; try /healthz, /ready, /metrics, /zones, /zones/<name>, /catalogue, /ui/` }),
    limits: { maxConnections: 64 },
  });
}
