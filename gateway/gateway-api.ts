/**
 * Kubernetes Gateway API objects (gateway.networking.k8s.io/v1: `Gateway`, `HTTPRoute`, `GRPCRoute`)
 * translated into the gateway's own config, then validated by the same readers as a file
 * (config-reader.ts `validateGatewayValue`), so both ways in mean exactly the same thing.
 *
 * - Gateway listeners → listeners (`HTTP`, `HTTPS` with `tls.mode: Terminate`); a certificateRef to
 *   Secret S in namespace N is read from `<certDir>/<N>/<S>/tls.crt` and `tls.key` (the Secret mounted
 *   there, as the deploy/ manifests do). A listener's `hostname` narrows the hosts of routes on it.
 * - Each HTTPRoute rule × match → one route, in the order the objects list them; `PathPrefix`, `Exact`,
 *   method, header (`Exact`, `RegularExpression`: the bounded regex rules of TrafficRoute), query
 *   (`Exact`); filters `URLRewrite` (ReplacePrefixMatch, ReplaceFullPath), `RequestRedirect`,
 *   `RequestHeaderModifier` (`add` is applied as `set`); `timeouts.request`.
 * - GRPCRoute method matches → a POST on `/<service>/<method>` (exact) or `/<service>` (prefix).
 * - One backendRef per rule: a Service of the mesh. Weighted splits between services are not a gateway
 *   route's job here: canaries are a TrafficRoute on the service (weights by labels), which the gateway's
 *   sidecar applies. Anything not listed is refused with its path rather than dropped silently.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import type { GatewayConfig } from './config-types.js';
import { validateGatewayValue } from './config-reader.js';
import { hostMatches } from './host-match.js';

export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';

export interface TranslateOptions {
  /** The Gateway to build (its routes are those whose parentRefs name it). */
  readonly gateway: { readonly namespace: string; readonly name: string };
  /** The gateway config's `mesh` section (control plane URL, token and CA files). */
  readonly mesh: Record<string, unknown>;
  /** Where Secrets named by certificateRefs are mounted: `<certDir>/<namespace>/<name>/tls.{crt,key}`. */
  readonly certDir: string;
  readonly admin?: Record<string, unknown>;
}

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
export const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);
export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export class Problems {
  readonly items: string[] = [];
  add(path: string, message: string): void {
    this.items.push(`${path}: ${message}`);
  }
}

export function meta(o: Obj): { name: string; namespace: string } {
  const m = isObj(o.metadata) ? o.metadata : {};
  return { name: str(m.name) ?? '', namespace: str(m.namespace) ?? 'default' };
}

/** One Gateway listener as the gateway's listener; undefined (with the problem added) when it cannot be served. */
export function translateListener(gw: Obj, l: Obj, i: number, certDir: string, p: Problems): Obj | undefined {
  const { namespace, name: gwName } = meta(gw);
  const at = `Gateway ${namespace}/${gwName} spec.listeners[${i}]`;
  const name = str(l.name) ?? `listener-${i}`;
  const protocol = str(l.protocol);
  if (protocol === 'HTTP') return { name, port: l.port, protocol: 'http' };
  if (protocol !== 'HTTPS') return void p.add(at, `protocol ${JSON.stringify(protocol)} is not served (HTTP or HTTPS)`);
  const tls = isObj(l.tls) ? l.tls : {};
  if ((str(tls.mode) ?? 'Terminate') !== 'Terminate') return void p.add(`${at}.tls.mode`, 'only Terminate is served (the gateway routes on the decrypted request)');
  const certificates = list(tls.certificateRefs).map((ref) => {
    const ns = str(ref.namespace) ?? namespace;
    const secret = str(ref.name) ?? '';
    const host = str(l.hostname);
    return { ...(host === undefined ? {} : { hosts: [host] }), certificate: `${certDir}/${ns}/${secret}/tls.crt`, key: `${certDir}/${ns}/${secret}/tls.key` };
  });
  if (certificates.length === 0) return void p.add(`${at}.tls.certificateRefs`, 'an HTTPS listener needs a certificate');
  return { name, port: l.port, protocol: 'https', tls: { certificates } };
}

function translateListeners(gw: Obj, opts: TranslateOptions, p: Problems): { listeners: Obj[]; hostnames: Map<string, string | undefined> } {
  const listeners: Obj[] = [];
  const hostnames = new Map<string, string | undefined>();
  list((gw.spec as Obj | undefined)?.listeners).forEach((l, i) => {
    hostnames.set(str(l.name) ?? `listener-${i}`, str(l.hostname));
    const out = translateListener(gw, l, i, opts.certDir, p);
    if (out !== undefined) listeners.push(out);
  });
  return { listeners, hostnames };
}

/** The hosts of a route on a listener: its hostnames narrowed by the listener's (Gateway API intersection). */
export function routeHosts(routeHostnames: string[], listenerHost: string | undefined): string[] {
  if (listenerHost === undefined) return routeHostnames.length === 0 ? ['*'] : routeHostnames;
  if (routeHostnames.length === 0) return [listenerHost];
  return routeHostnames.flatMap((h) => (hostMatches(listenerHost, h.replace(/^\*\./, 'x.')) ? [h] : hostMatches(h, listenerHost.replace(/^\*\./, 'x.')) ? [listenerHost] : []));
}

function translateMatch(m: Obj, grpc: boolean, at: string, p: Problems): Obj {
  const out: Obj = {};
  if (grpc) {
    const method = isObj(m.method) ? m.method : undefined;
    if (method !== undefined) {
      const service = str(method.service);
      const name = str(method.method);
      if ((str(method.type) ?? 'Exact') !== 'Exact') p.add(`${at}.method.type`, 'only Exact method matches are served');
      if (service !== undefined) out.path = name === undefined ? { prefix: `/${service}` } : { exact: `/${service}/${name}` };
    }
    out.methods = ['POST'];
  } else {
    const path = isObj(m.path) ? m.path : undefined;
    const type = str(path?.type) ?? 'PathPrefix';
    const value = str(path?.value) ?? '/';
    if (type === 'Exact') out.path = { exact: value };
    else if (type === 'PathPrefix') {
      if (value !== '/') out.path = { prefix: value.replace(/\/$/, '') };
    } else p.add(`${at}.path.type`, `${type} is not served (PathPrefix or Exact)`);
    if (str(m.method) !== undefined) out.methods = [m.method];
  }
  const headers = list(m.headers).map((h) => ((str(h.type) ?? 'Exact') === 'RegularExpression' ? { name: str(h.name)?.toLowerCase(), regex: h.value } : { name: str(h.name)?.toLowerCase(), exact: h.value }));
  if (headers.length > 0) out.headers = headers;
  const query = list(m.queryParams).map((q, k) => {
    if ((str(q.type) ?? 'Exact') !== 'Exact') p.add(`${at}.queryParams[${k}].type`, 'only Exact query matches are served');
    return { name: q.name, exact: q.value };
  });
  if (query.length > 0) out.query = query;
  return out;
}

function translateFilters(filters: Obj[], at: string, p: Problems): Obj {
  const out: Obj = {};
  filters.forEach((f, k) => {
    const type = str(f.type);
    const here = `${at}.filters[${k}]`;
    if (type === 'URLRewrite') {
      const path = isObj((f.urlRewrite as Obj | undefined)?.path) ? ((f.urlRewrite as Obj).path as Obj) : undefined;
      if (isObj(f.urlRewrite) && f.urlRewrite.hostname !== undefined) p.add(here, 'hostname rewrites are not served (the Host is the one the client sent)');
      if (str(path?.type) === 'ReplacePrefixMatch') out.rewrite = { prefix: path?.replacePrefixMatch };
      else if (str(path?.type) === 'ReplaceFullPath') out.rewrite = { path: path?.replaceFullPath };
    } else if (type === 'RequestRedirect') {
      const r = isObj(f.requestRedirect) ? f.requestRedirect : {};
      const path = isObj(r.path) ? r.path : undefined;
      out.redirect = {
        ...(r.scheme === undefined ? {} : { scheme: r.scheme }),
        ...(r.hostname === undefined ? {} : { host: r.hostname }),
        ...(r.port === undefined ? {} : { port: r.port }),
        ...(str(path?.type) === 'ReplaceFullPath' ? { path: path?.replaceFullPath } : {}),
        status: r.statusCode ?? 302,
      };
      if (str(path?.type) === 'ReplacePrefixMatch') p.add(here, 'a redirect with ReplacePrefixMatch is not served; use ReplaceFullPath');
    } else if (type === 'RequestHeaderModifier') {
      const h = isObj(f.requestHeaderModifier) ? f.requestHeaderModifier : {};
      const set = Object.fromEntries([...list(h.add), ...list(h.set)].map((e) => [str(e.name)?.toLowerCase(), e.value]));
      out.requestHeaders = { ...(Object.keys(set).length === 0 ? {} : { set }), ...(Array.isArray(h.remove) ? { remove: h.remove.map((x) => String(x).toLowerCase()) } : {}) };
    } else p.add(here, `filter ${JSON.stringify(type)} is not served`);
  });
  return out;
}

/** A route's rules × matches × listeners as gateway routes (the names unique per route, rule, match and listener). */
export function translateRoute(route: Obj, grpc: boolean, listenerNames: readonly string[], hostnames: ReadonlyMap<string, string | undefined>, p: Problems, skipRules: ReadonlySet<number> = new Set()): Obj[] {
  const { name, namespace } = meta(route);
  const kind = grpc ? 'GRPCRoute' : 'HTTPRoute';
  const spec = isObj(route.spec) ? route.spec : {};
  const routeHostnames = Array.isArray(spec.hostnames) ? spec.hostnames.map(String) : [];
  const out: Obj[] = [];
  list(spec.rules).forEach((rule, i) => {
    if (skipRules.has(i)) return;
    const at = `${kind} ${namespace}/${name} spec.rules[${i}]`;
    const backends = list(rule.backendRefs);
    const filters = translateFilters(list(rule.filters), at, p);
    if (filters.redirect === undefined && backends.length !== 1) return p.add(`${at}.backendRefs`, `expected exactly one backendRef (a mesh Service), got ${backends.length}; split traffic between versions with a TrafficRoute on the service`);
    const b = backends[0];
    if (b !== undefined && (str(b.kind) ?? 'Service') !== 'Service') return p.add(`${at}.backendRefs[0].kind`, 'only Services are served');
    const destination = b === undefined ? undefined : { service: b.name, namespace: str(b.namespace) ?? namespace, ...(b.port === undefined ? {} : { port: b.port }) };
    const timeout = isObj(rule.timeouts) ? str(rule.timeouts.request) : undefined;
    const matches = list(rule.matches).length === 0 ? [{}] : list(rule.matches);
    matches.forEach((m, j) => {
      for (const listener of listenerNames) {
        const hosts = routeHosts(routeHostnames, hostnames.get(listener));
        if (hosts.length === 0) continue;
        out.push({
          name: routeName(`${namespace}-${name}-${i}-${j}-${listener}`),
          hosts,
          listeners: [listener],
          match: translateMatch(m, grpc, `${at}.matches[${j}]`, p),
          ...(filters.redirect === undefined ? { destination } : {}),
          ...filters,
          ...(timeout === undefined ? {} : { timeout }),
        });
      }
    });
  });
  return out;
}

/**
 * A DNS label from a route's coordinates. One too long is cut and given a hash of the whole, so two
 * long names that share their first 54 characters still differ (the reader refuses a repeated name).
 */
export function routeName(full: string): string {
  const clean = full.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  if (clean.length <= 63) return clean.replace(/-+$/, '');
  return `${clean.slice(0, 54).replace(/-+$/, '')}-${createHash('sha256').update(full).digest('hex').slice(0, 8)}`;
}

function attachedListeners(route: Obj, gw: { namespace: string; name: string }, all: string[]): string[] {
  const { namespace } = meta(route);
  const refs = list((route.spec as Obj | undefined)?.parentRefs).filter((r) => str(r.name) === gw.name && (str(r.namespace) ?? namespace) === gw.namespace);
  if (refs.some((r) => r.sectionName === undefined)) return all;
  return refs.map((r) => String(r.sectionName)).filter((s) => all.includes(s));
}

/** Translates the objects into a gateway config; throws one InputError listing every problem. */
export function translateGatewayApi(objects: readonly unknown[], opts: TranslateOptions, source: string): GatewayConfig {
  const p = new Problems();
  const objs = objects.filter(isObj).filter((o) => str(o.apiVersion)?.startsWith(`${GATEWAY_API_GROUP}/`) === true);
  const gw = objs.find((o) => o.kind === 'Gateway' && meta(o).name === opts.gateway.name && meta(o).namespace === opts.gateway.namespace);
  if (gw === undefined) throw new InputError(CODE.CONFIG_INVALID, `${source}: no Gateway ${opts.gateway.namespace}/${opts.gateway.name}`);
  const { listeners, hostnames } = translateListeners(gw, opts, p);
  const names = listeners.map((l) => String(l.name));
  const routes: Obj[] = [];
  for (const o of objs) {
    if (o.kind !== 'HTTPRoute' && o.kind !== 'GRPCRoute') continue;
    const on = attachedListeners(o, opts.gateway, names);
    if (on.length > 0) routes.push(...translateRoute(o, o.kind === 'GRPCRoute', on, hostnames, p));
  }
  if (p.items.length > 0) throw new InputError(CODE.CONFIG_INVALID, `${source}: the Gateway API objects cannot be served as written:\n  ${p.items.join('\n  ')}`, { details: { issues: p.items } });
  const value = { name: opts.gateway.name, namespace: opts.gateway.namespace, mesh: opts.mesh, ...(opts.admin === undefined ? {} : { admin: opts.admin }), listeners, routes };
  return validateGatewayValue(value, `${source} (translated Gateway ${opts.gateway.namespace}/${opts.gateway.name})`, opts.certDir);
}
