/**
 * The routes and JWT providers of the gateway config. A route's `match` and `requestHeaders` are the
 * TrafficRoute's own (policy/traffic/route-validator.ts), so the two read and behave alike; what is new
 * here (hosts, destination, redirect, rewrite, JWT, rate limit, CORS) is checked field by field.
 */
import type { ConfigNode, ConfigObject } from '../common/config-node.js';
import { METHOD_PATTERN, pathPatternProblem } from '../policy/http-match.js';
import { validateEdits, validateMatch } from '../policy/traffic/route-validator.js';
import type { CorsSpec, DestinationSpec, JwtProviderSpec, JwtRouteSpec, RateLimitSpec, RedirectSpec, RewriteSpec, RouteSpec } from './config-types.js';
import { HOST_PATTERN } from './host-match.js';

export type PathReader = (n: ConfigNode) => string | undefined;

const NAME_RULE = { pattern: /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, expected: 'a DNS label (lowercase letters, digits, "-", at most 63 characters)' } as const;
const HEADER_NAME = { pattern: /^[!#$%&'*+\-.^_`|~0-9a-z]{1,128}$/, expected: 'a lower-case header name' } as const;
const MAX_ROUTES = 1024;
/** Asymmetric algorithms only: a JWKS holds public keys, so an HMAC or `none` token is always refused. */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
/** Headers the gateway sets itself or that frame the request: a claim may not be mapped onto them. */
const UNMAPPABLE = /^(host|content-length|transfer-encoding|connection|upgrade|te|trailer|keep-alive|proxy-connection|x-forwarded-.*|forwarded|x-request-id|authorization|cookie|trellis-.*)$/;

interface RouteContext {
  readonly listeners: readonly string[];
  readonly providers: readonly string[];
  /** No route at all is a config (a Gateway no route is attached to yet); a file needs at least one. */
  readonly emptyRoutes?: boolean;
}

export function readRoutes(node: ConfigNode, ctx: RouteContext): RouteSpec[] {
  const out: RouteSpec[] = [];
  for (const item of node.list({ minItems: ctx.emptyRoutes === true ? 0 : 1, maxItems: MAX_ROUTES }) ?? []) {
    const route = readRoute(item, ctx);
    if (route === undefined) continue;
    if (out.some((r) => r.name === route.name)) item.report(`route name "${route.name}" is used twice`);
    else out.push(route);
  }
  return out;
}

function readRoute(item: ConfigNode, ctx: RouteContext): RouteSpec | undefined {
  const o = item.object({
    required: ['name'],
    optional: ['hosts', 'listeners', 'match', 'destination', 'redirect', 'rewrite', 'requestHeaders', 'timeout', 'jwt', 'rateLimit', 'cors', 'maxBodyBytes'],
  });
  if (o === undefined) return undefined;
  const bad = { count: 0 };
  const need = <T>(key: string, read: (n: ConfigNode) => T | undefined): T | undefined => {
    const n = o.field(key);
    if (n === undefined) return undefined;
    const v = read(n);
    if (v === undefined) bad.count++;
    return v;
  };
  const name = need('name', (n) => n.string(NAME_RULE));
  const hosts = need('hosts', (n) => stringList(n, 64, { pattern: HOST_PATTERN, expected: 'a lower-case host name, *.suffix, or *' })) ?? ['*'];
  const listeners = need('listeners', (n) => names(n, ctx.listeners, 'listener')) ?? [];
  const match = need('match', validateMatch);
  const destination = need('destination', readDestination);
  const redirect = need('redirect', readRedirect);
  if ((destination === undefined) === (redirect === undefined) && !o.has('destination') && !o.has('redirect')) item.report('expected "destination" (a mesh service) or "redirect"');
  if (o.has('destination') && o.has('redirect')) item.report('"destination" and "redirect" exclude each other');
  const rewrite = need('rewrite', (n) => readRewrite(n, match?.path));
  const requestHeaders = need('requestHeaders', validateEdits);
  const timeoutMs = need('timeout', (n) => n.duration());
  const jwt = need('jwt', (n) => readJwtRoute(n, ctx.providers));
  const rateLimit = need('rateLimit', (n) => readRateLimit(n, o.has('jwt')));
  const cors = need('cors', readCors);
  const maxBodyBytes = need('maxBodyBytes', (n) => n.integer({ min: 0, max: 1024 * 1024 * 1024 }));
  if (name === undefined || bad.count > 0 || (destination === undefined && redirect === undefined)) return undefined;
  return {
    name, hosts, listeners, match,
    ...(destination === undefined ? {} : { destination }),
    ...(redirect === undefined ? {} : { redirect }),
    ...(rewrite === undefined ? {} : { rewrite }),
    ...(requestHeaders === undefined ? {} : { requestHeaders }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(jwt === undefined ? {} : { jwt }),
    ...(rateLimit === undefined ? {} : { rateLimit }),
    ...(cors === undefined ? {} : { cors }),
    ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }),
  };
}

function stringList(n: ConfigNode, max: number, rule: { pattern: RegExp; expected: string }): string[] | undefined {
  const items = n.list({ minItems: 1, maxItems: max });
  if (items === undefined) return undefined;
  const out = items.map((i) => i.string(rule));
  return out.every((v) => v !== undefined) ? (out as string[]) : undefined;
}

function names(n: ConfigNode, known: readonly string[], what: string): string[] | undefined {
  const items = n.list({ minItems: 1, maxItems: 64 });
  if (items === undefined) return undefined;
  let ok = true;
  const out: string[] = [];
  for (const i of items) {
    const v = i.string(NAME_RULE);
    if (v !== undefined && !known.includes(v)) ok = i.report(`no ${what} is named "${v}" (known: ${known.join(', ') || 'none'})`) ?? false;
    else if (v === undefined) ok = false;
    else out.push(v);
  }
  return ok ? out : undefined;
}

function readDestination(n: ConfigNode): DestinationSpec | undefined {
  const o = n.object({ required: ['service', 'namespace'], optional: ['port'] });
  const service = o?.field('service')?.string(NAME_RULE);
  const namespace = o?.field('namespace')?.string(NAME_RULE);
  const port = o?.field('port')?.integer({ min: 1, max: 65535 });
  if (service === undefined || namespace === undefined || (o?.has('port') === true && port === undefined)) return undefined;
  return { service, namespace, port };
}

function readRedirect(n: ConfigNode): RedirectSpec | undefined {
  const o = n.object({ optional: ['scheme', 'host', 'port', 'path', 'status'] });
  if (o === undefined) return undefined;
  const scheme = o.field('scheme')?.oneOf(['http', 'https'] as const);
  const host = o.field('host')?.string({ pattern: HOST_PATTERN, expected: 'a lower-case host name' });
  const port = o.field('port')?.integer({ min: 1, max: 65535 });
  const pathNode = o.field('path');
  const path = pathNode === undefined ? undefined : absolutePath(pathNode);
  const statusNode = o.field('status');
  const status = statusNode === undefined ? 302 : statusNode.integer({ min: 301, max: 308 });
  if (status !== undefined && ![301, 302, 303, 307, 308].includes(status)) statusNode?.report('expected one of 301, 302, 303, 307, 308');
  const given = ['scheme', 'host', 'port', 'path'].some((k) => o.has(k));
  if (!given) return n.report('a redirect must change at least one of scheme, host, port, path');
  if (status === undefined || ![301, 302, 303, 307, 308].includes(status)) return undefined;
  if ((o.has('scheme') && scheme === undefined) || (o.has('host') && host === undefined) || (o.has('port') && port === undefined) || (pathNode !== undefined && path === undefined)) return undefined;
  return { ...(scheme === undefined ? {} : { scheme }), ...(host === undefined ? {} : { host }), ...(port === undefined ? {} : { port }), ...(path === undefined ? {} : { path }), status: status as RedirectSpec['status'] };
}

function absolutePath(n: ConfigNode): string | undefined {
  const text = n.string({ maxLength: 1024 });
  if (text === undefined) return undefined;
  const problem = pathPatternProblem(text);
  return problem === undefined ? text : n.report(problem);
}

function readRewrite(n: ConfigNode, matched: { readonly prefix: string } | { readonly exact: string } | undefined): RewriteSpec | undefined {
  const o = n.object({ optional: ['prefix', 'path'] });
  if (o === undefined) return undefined;
  if (o.has('prefix') === o.has('path')) return n.report('expected exactly one of "prefix" (replaces the matched prefix) or "path" (replaces the whole path)');
  if (o.has('prefix') && (matched === undefined || !('prefix' in matched))) return n.report('"rewrite.prefix" needs "match.path.prefix": it replaces that prefix');
  const v = absolutePath(o.field(o.has('prefix') ? 'prefix' : 'path') as ConfigNode);
  if (v === undefined) return undefined;
  return o.has('prefix') ? { prefix: v } : { path: v };
}

function readJwtRoute(n: ConfigNode, providers: readonly string[]): JwtRouteSpec | undefined {
  const o = n.object({ required: ['provider'], optional: ['requiredClaims', 'claimHeaders'] });
  if (o === undefined) return undefined;
  const provider = o.field('provider')?.string(NAME_RULE);
  let ok = provider !== undefined;
  if (provider !== undefined && !providers.includes(provider)) ok = o.field('provider')?.report(`no jwtProviders entry is named "${provider}"`) ?? false;
  const requiredClaims: Record<string, string | null> = {};
  const rc = o.field('requiredClaims');
  for (const item of rc?.list({ minItems: 1, maxItems: 32 }) ?? []) {
    const c = item.object({ required: ['name'], optional: ['value'] });
    const name = c?.field('name')?.string({ maxLength: 128 });
    const value = c?.field('value')?.string({ nonEmpty: false, maxLength: 1024 });
    if (name !== undefined) Object.defineProperty(requiredClaims, name, { value: value ?? null, enumerable: true });
  }
  const claimHeaders = o.field('claimHeaders')?.stringMap() ?? {};
  for (const [claim, header] of Object.entries(claimHeaders)) {
    if (!HEADER_NAME.pattern.test(header) || UNMAPPABLE.test(header)) ok = o.field('claimHeaders')?.report(`${claim}: ${JSON.stringify(header)} is not a header a claim may be mapped to (a lower-case name, not one the gateway or the mesh sets)`) ?? false;
  }
  return ok ? { provider: provider as string, requiredClaims, claimHeaders } : undefined;
}

function readRateLimit(n: ConfigNode, hasJwt: boolean): RateLimitSpec | undefined {
  const o = n.object({ required: ['perSecond'], optional: ['burst', 'by', 'claim'] });
  if (o === undefined) return undefined;
  const perSecond = o.field('perSecond')?.number({ min: 0.001, max: 1_000_000 });
  const burst = o.field('burst')?.integer({ min: 1, max: 1_000_000 }) ?? Math.max(1, Math.ceil(perSecond ?? 1));
  const by = o.field('by')?.oneOf(['client', 'claim'] as const) ?? 'client';
  const claim = o.field('claim')?.string({ maxLength: 128 });
  if (by === 'claim' && claim === undefined) return n.report('"by: claim" needs "claim": the JWT claim whose value keys the bucket');
  if (by === 'claim' && !hasJwt) return n.report('"by: claim" needs "jwt" on the same route: only verified claims may key a limit');
  if (perSecond === undefined) return undefined;
  return { perSecond, burst, key: by === 'claim' ? { by, claim: claim as string } : { by } };
}

function readCors(n: ConfigNode): CorsSpec | undefined {
  const o = n.object({ required: ['allowOrigins'], optional: ['allowMethods', 'allowHeaders', 'exposeHeaders', 'maxAge', 'allowCredentials'] });
  if (o === undefined) return undefined;
  const allowOrigins = stringList(o.field('allowOrigins') as ConfigNode, 64, { pattern: /^(\*|https?:\/\/[a-z0-9.-]+(:\d{1,5})?)$/, expected: 'an origin such as https://app.example.com, or *' });
  const allowMethods = o.field('allowMethods') === undefined ? ['GET', 'HEAD', 'POST'] : stringList(o.field('allowMethods') as ConfigNode, 16, { pattern: METHOD_PATTERN, expected: 'an upper-case HTTP method' });
  const allowHeaders = o.field('allowHeaders') === undefined ? [] : stringList(o.field('allowHeaders') as ConfigNode, 64, HEADER_NAME);
  const exposeHeaders = o.field('exposeHeaders') === undefined ? [] : stringList(o.field('exposeHeaders') as ConfigNode, 64, HEADER_NAME);
  const maxAge = o.field('maxAge')?.duration() ?? 600_000;
  const allowCredentials = o.field('allowCredentials')?.boolean() ?? false;
  if (allowCredentials && allowOrigins?.includes('*') === true) return n.report('"allowCredentials: true" with origin "*" would let any site read credentialed answers: list the origins');
  if (allowOrigins === undefined || allowMethods === undefined || allowHeaders === undefined || exposeHeaders === undefined) return undefined;
  return { allowOrigins, allowMethods, allowHeaders, exposeHeaders, maxAgeSeconds: Math.round(maxAge / 1000), allowCredentials };
}

export function readJwtProviders(node: ConfigNode | undefined, path: PathReader): JwtProviderSpec[] {
  const out: JwtProviderSpec[] = [];
  for (const item of node?.list({ maxItems: 64 }) ?? []) {
    const o: ConfigObject | undefined = item.object({ required: ['name', 'issuer', 'jwks'], optional: ['audiences', 'refresh', 'clockSkew', 'algorithms'] });
    if (o === undefined) continue;
    const name = o.field('name')?.string(NAME_RULE);
    const issuer = o.field('issuer')?.string({ maxLength: 1024 });
    const audiences = o.field('audiences') === undefined ? [] : stringList(o.field('audiences') as ConfigNode, 32, { pattern: /^[\x21-\x7e]{1,1024}$/, expected: 'an audience' });
    const jwks = readJwks(o.field('jwks') as ConfigNode, path);
    const refreshMs = readRefresh(o.field('refresh'));
    const clockSkewMs = o.field('clockSkew')?.duration() ?? 30_000;
    const algorithms = o.field('algorithms') === undefined ? [...JWT_ALGORITHMS] : o.field('algorithms')?.list({ minItems: 1, maxItems: 10 })?.map((a) => a.oneOf(JWT_ALGORITHMS));
    if (name === undefined || issuer === undefined || audiences === undefined || jwks === undefined || refreshMs === undefined || algorithms === undefined || algorithms.some((a) => a === undefined)) continue;
    if (out.some((p) => p.name === name)) item.report(`JWT provider "${name}" is listed twice`);
    else out.push({ name, issuer, audiences, jwks, refreshMs, clockSkewMs, algorithms: algorithms as string[] });
  }
  return out;
}

/** How often a JWKS URL is fetched again: bounded, so a typo cannot hammer the issuer nor keep rotated-out keys for days. */
const JWKS_REFRESH = Object.freeze({ defaultMs: 300_000, minMs: 1_000, maxMs: 86_400_000 });

function readRefresh(n: ConfigNode | undefined): number | undefined {
  if (n === undefined) return JWKS_REFRESH.defaultMs;
  const ms = n.duration();
  if (ms === undefined) return undefined;
  return ms >= JWKS_REFRESH.minMs && ms <= JWKS_REFRESH.maxMs ? ms : n.report(`expected a duration from ${JWKS_REFRESH.minMs} ms to ${JWKS_REFRESH.maxMs} ms`);
}

function readJwks(n: ConfigNode, path: PathReader): JwtProviderSpec['jwks'] | undefined {
  const o = n.object({ optional: ['file', 'url', 'caFile'] });
  if (o === undefined) return undefined;
  if (o.has('file') === o.has('url')) return n.report('expected exactly one of "file" or "url"');
  if (o.has('file') && o.has('caFile')) return (o.field('caFile') as ConfigNode).report('"caFile" names the roots of the JWKS server: with "url" only');
  if (o.has('file')) {
    const file = path(o.field('file') as ConfigNode);
    return file === undefined ? undefined : { file };
  }
  const urlNode = o.field('url') as ConfigNode;
  const text = urlNode.string();
  if (text === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return urlNode.report(`expected an https:// URL, got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'https:') return urlNode.report('keys are fetched over https only (a key set fetched in clear could be replaced)');
  if (url.username !== '' || url.password !== '') return urlNode.report('credentials in the URL would be logged with it; the JWKS URL must not carry any');
  const caNode = o.field('caFile');
  const caFile = caNode === undefined ? undefined : path(caNode);
  if (caNode !== undefined && caFile === undefined) return undefined;
  return { url: url.toString(), ...(caFile === undefined ? {} : { caFile }) };
}
