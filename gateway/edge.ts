/**
 * A route's edge checks, in the order a browser and an attacker meet them:
 *  1. CORS: a preflight (OPTIONS with Access-Control-Request-Method) is answered here, 204 when origin,
 *     method and headers are allowed, else 403; an allowed origin's actual request gets the
 *     Access-Control-Allow-* headers on its answer. Preflights carry no credentials, so they come first.
 *  2. JWT: `Authorization: Bearer` verified by the route's provider (jwt-verifier.ts); missing or bad: 401
 *     with `WWW-Authenticate`; a required claim absent or different: 403; the mapped claims become request
 *     headers (any client copy of those headers is removed first, forwarder.ts).
 *  3. Rate limit: the route's token bucket per client address (client-headers.ts, trusted hops applied)
 *     or per verified claim; empty: 429 with `Retry-After`.
 */
import type { ServerResponse } from 'node:http';
import type { JWTPayload } from 'jose';
import type { Logger } from '../common/log.js';
import type { CorsSpec, GatewayConfig, JwtRouteSpec, RouteSpec } from './config-types.js';
import { gatewayFailure, respondFailure } from './failure.js';
import { JwtVerifier } from './jwt-verifier.js';
import type { GatewayMetrics } from './metrics.js';
import { RateLimiter } from './rate-limiter.js';
import type { EdgeChecks, Exchange } from './request-handler.js';
import type { CompiledRoute } from './route-table.js';

export interface ClosableEdgeChecks extends EdgeChecks {
  close(): void;
  /** Tests: waits until file key sets are read. */
  ready(): Promise<void>;
}

/** Visible ASCII and spaces only: a claim may not smuggle CR/LF or control bytes into a header. */
const HEADER_SAFE = /^[\x20-\x7e]{0,1024}$/;

function claimText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const text = typeof value === 'string' ? value : Array.isArray(value) ? value.map(String).join(',') : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return HEADER_SAFE.test(text) ? text : undefined;
}

function claimHolds(claims: JWTPayload, name: string, expected: string | null): boolean {
  const v = claims[name];
  if (v === undefined || v === null) return false;
  if (expected === null) return true;
  if (Array.isArray(v)) return v.some((x) => String(x) === expected);
  // Space-separated scopes (RFC 8693 `scope`) hold a value when one of them is it.
  if (name === 'scope' && typeof v === 'string') return v.split(' ').includes(expected);
  return String(v) === expected;
}

function corsOriginAllowed(spec: CorsSpec, origin: string): boolean {
  return spec.allowOrigins.includes('*') || spec.allowOrigins.includes(origin);
}

export function createEdgeChecks(config: GatewayConfig, metrics: GatewayMetrics, log: Logger): ClosableEdgeChecks {
  const verifiers = new Map(config.jwtProviders.map((p) => [p.name, new JwtVerifier(p, log)]));
  const limiters = new Map<RouteSpec, RateLimiter>();
  for (const r of config.routes) if (r.rateLimit !== undefined) limiters.set(r, new RateLimiter(r.rateLimit));

  const refuse = (ex: Exchange, route: RouteSpec, reason: string, failure: ReturnType<typeof gatewayFailure>, extra?: Record<string, string>): false => {
    metrics.refusals.inc({ listener: ex.listener.name, route: route.name, reason });
    respondFailure(ex.res, failure, ex.correlationId, extra);
    return false;
  };

  /** True: go on (headers for an actual request set); false: answered here. */
  const cors = (route: RouteSpec, spec: CorsSpec, ex: Exchange): boolean => {
    const origin = ex.req.headers.origin;
    if (typeof origin !== 'string') return true;
    const allowed = corsOriginAllowed(spec, origin);
    const requested = ex.req.headers['access-control-request-method'];
    if (ex.req.method === 'OPTIONS' && typeof requested === 'string') {
      const headers = String(ex.req.headers['access-control-request-headers'] ?? '').split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
      const bad = !allowed ? `origin ${origin}` : !spec.allowMethods.includes(requested) ? `method ${requested}` : headers.find((h) => !spec.allowHeaders.includes(h));
      if (bad !== undefined) return refuse(ex, route, 'cors', gatewayFailure('GATEWAY_CORS_REFUSED', bad.slice(0, 200)), { vary: 'Origin' });
      (ex.res as ServerResponse).writeHead(204, {
        'access-control-allow-origin': origin,
        'access-control-allow-methods': spec.allowMethods.join(', '),
        ...(spec.allowHeaders.length === 0 ? {} : { 'access-control-allow-headers': spec.allowHeaders.join(', ') }),
        'access-control-max-age': String(spec.maxAgeSeconds),
        ...(spec.allowCredentials ? { 'access-control-allow-credentials': 'true' } : {}),
        vary: 'Origin',
      });
      ex.res.end();
      return false;
    }
    ex.res.setHeader('vary', 'Origin');
    if (!allowed) return true;
    ex.res.setHeader('access-control-allow-origin', origin);
    if (spec.allowCredentials) ex.res.setHeader('access-control-allow-credentials', 'true');
    if (spec.exposeHeaders.length > 0) ex.res.setHeader('access-control-expose-headers', spec.exposeHeaders.join(', '));
    return true;
  };

  const jwt = async (route: RouteSpec, spec: JwtRouteSpec, ex: Exchange): Promise<JWTPayload | false> => {
    const auth = ex.req.headers.authorization;
    const challenge = { 'www-authenticate': 'Bearer realm="trellis-gateway", error="invalid_token"' };
    const m = typeof auth === 'string' ? /^Bearer ([A-Za-z0-9_.~+/=-]+)$/i.exec(auth) : null;
    if (m === null) return refuse(ex, route, 'jwt-missing', gatewayFailure('GATEWAY_JWT_INVALID', 'no bearer token'), { 'www-authenticate': 'Bearer realm="trellis-gateway"' });
    const outcome = await (verifiers.get(spec.provider) as JwtVerifier).verify(m[1] as string);
    if (!outcome.ok && outcome.keysUnavailable === true) return refuse(ex, route, 'jwks-unavailable', gatewayFailure('GATEWAY_JWKS_UNAVAILABLE', spec.provider));
    if (!outcome.ok) return refuse(ex, route, 'jwt-invalid', gatewayFailure('GATEWAY_JWT_INVALID', outcome.reason), challenge);
    for (const [name, expected] of Object.entries(spec.requiredClaims)) {
      if (!claimHolds(outcome.claims, name, expected)) return refuse(ex, route, 'jwt-claims', gatewayFailure('GATEWAY_JWT_FORBIDDEN', `claim ${name}`), { 'www-authenticate': 'Bearer realm="trellis-gateway", error="insufficient_scope"' });
    }
    for (const [claim, header] of Object.entries(spec.claimHeaders)) {
      const text = claimText(outcome.claims[claim]);
      // Set, or removed (an empty claim header beats the client's own copy, which is always dropped).
      if (text !== undefined) ex.setHeaders[header] = text;
      else ex.setHeaders[header] = '';
    }
    for (const [h, v] of Object.entries(ex.setHeaders)) if (v === '') delete ex.setHeaders[h];
    return outcome.claims;
  };

  return {
    async admit(compiled: CompiledRoute, ex: Exchange): Promise<boolean> {
      const route = compiled.spec;
      if (route.cors !== undefined && !cors(route, route.cors, ex)) return false;
      let claims: JWTPayload | undefined;
      if (route.jwt !== undefined) {
        const verified = await jwt(route, route.jwt, ex);
        if (verified === false) return false;
        claims = verified;
      }
      const limiter = limiters.get(route);
      if (limiter !== undefined && route.rateLimit !== undefined) {
        const key = route.rateLimit.key.by === 'client' ? ex.view.client : `claim:${claimText(claims?.[route.rateLimit.key.claim]) ?? ''}`;
        const wait = limiter.take(key);
        if (wait > 0) return refuse(ex, route, 'rate-limited', gatewayFailure('GATEWAY_RATE_LIMITED', `${route.rateLimit.perSecond}/s`), { 'retry-after': String(wait) });
      }
      return true;
    },
    close(): void {
      for (const v of verifiers.values()) v.close();
    },
    async ready(): Promise<void> {
      await Promise.all([...verifiers.values()].map((v) => v.ready()));
    },
  };
}
