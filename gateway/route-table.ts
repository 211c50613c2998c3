/**
 * Which route serves a request: compiled once per config, one table per listener.
 *
 * Precedence (as the Gateway API orders HTTPRoute matches): the most specific host first (an exact host,
 * then wildcards by length, then `*`); among routes of equally specific hosts, file order, the first
 * whose `match` holds winning (the TrafficRoute's matcher, policy/traffic/route-match.ts). A host group
 * without a matching route falls through to less specific ones, so `*.example.com` can back up
 * `api.example.com` for the paths the latter does not claim.
 */
import { compileMatch, type Matcher, type TrafficRequest } from '../policy/traffic/route-match.js';
import type { GatewayConfig, RouteSpec } from './config-types.js';
import { hostMatches, hostSpecificity } from './host-match.js';

export interface CompiledRoute {
  readonly spec: RouteSpec;
  readonly matches: Matcher;
}

interface HostGroup {
  /** The pattern (for wildcards, tested against the host). */
  readonly pattern: string;
  readonly routes: CompiledRoute[];
}

class ListenerTable {
  private readonly exact = new Map<string, CompiledRoute[]>();
  /** Wildcards and `*`, most specific first. */
  private readonly wildcards: HostGroup[] = [];

  add(route: CompiledRoute): void {
    for (const host of route.spec.hosts) {
      if (host === '*' || host.startsWith('*.')) {
        let group = this.wildcards.find((g) => g.pattern === host);
        if (group === undefined) {
          group = { pattern: host, routes: [] };
          this.wildcards.push(group);
          this.wildcards.sort((a, b) => hostSpecificity(b.pattern) - hostSpecificity(a.pattern));
        }
        if (!group.routes.includes(route)) group.routes.push(route);
      } else {
        const list = this.exact.get(host) ?? [];
        if (!list.includes(route)) list.push(route);
        this.exact.set(host, list);
      }
    }
  }

  find(host: string, req: TrafficRequest, query: () => URLSearchParams): CompiledRoute | undefined {
    const exact = this.exact.get(host);
    if (exact !== undefined) for (const r of exact) if (r.matches(req, query)) return r;
    for (const g of this.wildcards) {
      if (!hostMatches(g.pattern, host)) continue;
      for (const r of g.routes) if (r.matches(req, query)) return r;
    }
    return undefined;
  }
}

export class RouteTable {
  private readonly tables = new Map<string, ListenerTable>();

  constructor(config: Pick<GatewayConfig, 'listeners' | 'routes'>) {
    for (const l of config.listeners) this.tables.set(l.name, new ListenerTable());
    for (const spec of config.routes) {
      const route: CompiledRoute = Object.freeze({ spec, matches: compileMatch(spec.match) });
      for (const [name, table] of this.tables) if (spec.listeners.length === 0 || spec.listeners.includes(name)) table.add(route);
    }
  }

  /** The route for a request on `listener` to `host` (lower case, no port), or undefined: 404. */
  find(listener: string, host: string, req: TrafficRequest): CompiledRoute | undefined {
    let parsed: URLSearchParams | undefined;
    const query = (): URLSearchParams => (parsed ??= new URLSearchParams(req.query));
    return this.tables.get(listener)?.find(host, req, query);
  }
}
