/**
 * `trellis explain --gateway FILE --host H --path P`: which route of a gateway config serves a request,
 * and what the mesh is then asked. The route is found by the gateway's own table (gateway/route-table.ts)
 * on the normalised path; the policy question that follows is the one the destination's sidecar answers:
 * the gateway's identity (its config's namespace/name) calling the route's service with the rewritten path.
 */
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { normalizeRequestPath } from '../policy/http-match.js';
import { loadGatewayConfig } from '../gateway/config-reader.js';
import { destinationName, upstreamPath } from '../gateway/forwarder.js';
import { requestHost } from '../gateway/host-match.js';
import { RouteTable } from '../gateway/route-table.js';

export interface GatewayExplanation {
  /** Lines printed before the policy decision. */
  readonly text: string;
  readonly route: string | null;
  /** The policy question, when the route forwards into the mesh. */
  readonly question?: { readonly from: string; readonly to: string; readonly path: string };
}

export async function explainGatewayRoute(file: string, request: { host: string; path: string; method: string; headers: readonly [string, string][]; listener: string | undefined }): Promise<GatewayExplanation> {
  const config = await loadGatewayConfig(file);
  const host = requestHost(request.host);
  if (host === undefined) throw new InputError(CODE.CLI_USAGE, `--host: "${request.host}" is not a host name`);
  const target = request.path;
  const path = target.startsWith('/') ? normalizeRequestPath(target) : null;
  if (path === null) throw new InputError(CODE.CLI_USAGE, `--path: "${target}" cannot be normalised (the gateway answers 400)`);
  const listener = request.listener ?? config.listeners[0]?.name;
  if (listener === undefined || !config.listeners.some((l) => l.name === listener)) throw new InputError(CODE.CLI_USAGE, `--listener: no listener "${request.listener}" in ${file}`);
  const q = target.indexOf('?');
  const query = q < 0 ? '' : target.slice(q + 1);
  const route = new RouteTable(config).find(listener, host, {
    method: request.method,
    path,
    query,
    headerValues: (name) => request.headers.filter(([n]) => n === name).map(([, v]) => v),
  });
  const head = `gateway ${config.namespace}/${config.name}, listener ${listener}: ${request.method} ${host}${target}`;
  if (route === undefined) return { text: `${head}\n  no route matches: 404 TRELLIS_GATEWAY_NO_ROUTE\n`, route: null };
  const spec = route.spec;
  const edge = [spec.jwt === undefined ? null : `JWT from provider ${spec.jwt.provider}`, spec.rateLimit === undefined ? null : `rate limit ${spec.rateLimit.perSecond}/s (burst ${spec.rateLimit.burst}) per ${spec.rateLimit.key.by === 'client' ? 'client' : `claim ${spec.rateLimit.key.claim}`}`, spec.cors === undefined ? null : 'CORS'].filter((x) => x !== null);
  const lines = [head, `  route ${spec.name} (hosts ${spec.hosts.join(', ')})${edge.length === 0 ? '' : `; checks: ${edge.join(', ')}`}`];
  if (spec.redirect !== undefined) {
    lines.push(`  redirect ${spec.redirect.status}${spec.redirect.path === undefined ? '' : ` to path ${spec.redirect.path}`}${spec.redirect.host === undefined ? '' : ` on host ${spec.redirect.host}`}`);
    return { text: `${lines.join('\n')}\n`, route: spec.name };
  }
  const dest = spec.destination as NonNullable<typeof spec.destination>;
  const forwarded = upstreamPath(spec, path, '');
  lines.push(`  forwards to ${destinationName(dest)} as ${request.method} ${forwarded}${query === '' ? '' : `?${query}`}`, '');
  return { text: `${lines.join('\n')}\n`, route: spec.name, question: { from: `${config.namespace}/${config.name}`, to: `${dest.namespace}/${dest.service}`, path: forwarded } };
}
