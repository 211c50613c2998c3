/**
 * Inbound authorization (proxy/inbound/authorize.ts), the one place TCP streams and HTTP requests are judged:
 * a denial is counted in the one counter with the same labels whatever the protocol, a dry-run denial is
 * counted as not enforced and let through, an allowed request is neither counted nor logged, and the log
 * line says which protocol was denied.
 */
import { describe, expect, it } from 'vitest';
import type { AuthorizationRequest, Decision } from '../../policy/types.js';
import { authorizeInbound, deciderOf, type AuthorizationSinks } from '../../proxy/inbound/authorize.js';
import { LogSampler } from '../../proxy/core/log-sampler.js';
import type { VerifiedPeer } from '../../proxy/core/peer-identity.js';

const peer = { spiffeId: 'spiffe://mesh.test/ns/shop/sa/web', namespace: 'shop', service: 'web' } as unknown as VerifiedPeer;
const destination = { namespace: 'shop', service: 'api' };

function sinks(): { sinks: AuthorizationSinks; counts: Record<string, unknown>[]; lines: { fields: Record<string, unknown>; msg: string }[] } {
  const counts: Record<string, unknown>[] = [];
  const lines: { fields: Record<string, unknown>; msg: string }[] = [];
  const logger = { warn: (fields: Record<string, unknown>, msg: string) => void lines.push({ fields, msg }) };
  const metrics = { policyDenials: { inc: (labels: Record<string, unknown>) => void counts.push(labels) } } as unknown as AuthorizationSinks['metrics'];
  return { sinks: { metrics, denialLog: new LogSampler(logger as never, 60_000) }, counts, lines };
}

const policyOf = (decision: Decision) => ({ evaluate: (_request: AuthorizationRequest) => decision });

describe('authorizeInbound', () => {
  it('counts and logs an enforced denial with the same labels for TCP and HTTP', () => {
    const s = sinks();
    const denied: Decision = { allowed: false, enforced: true, policy: 'shop/api-access', rule: 2, reason: 'no rule allows the caller' };
    const tcp: AuthorizationRequest = { source: peer, destination, protocol: 'tcp' };
    const http: AuthorizationRequest = { source: peer, destination, protocol: 'http', http: { method: 'GET', path: '/admin' } };
    expect(authorizeInbound(s.sinks, peer, policyOf(denied), tcp, 'c1', 8080).allowed).toBe(false);
    expect(authorizeInbound(s.sinks, peer, policyOf(denied), http, 'c2').allowed).toBe(false);
    const labels = { source: 'shop/web', source_zone: 'unknown', destination: 'shop/api', policy: 'shop/api-access', rule: '2', enforced: 'true' };
    expect(s.counts).toEqual([labels, labels]);
    // One log line per caller, decider and mode within the interval, whatever the protocol.
    expect(s.lines).toHaveLength(1);
    expect(s.lines[0]?.msg).toBe('TCP stream denied by policy');
    expect(s.lines[0]?.fields).toMatchObject({ correlationId: 'c1', decidedBy: 'shop/api-access#2', port: 8080, enforced: true });
  });

  it('counts a dry-run denial as not enforced, lets it through and names the HTTP request', () => {
    const s = sinks();
    const dryRun: Decision = { allowed: true, enforced: false, policy: 'shop/strict', rule: null, reason: 'dry-run' };
    const http: AuthorizationRequest = { source: peer, destination, protocol: 'http', http: { method: 'POST', path: '/orders' } };
    expect(authorizeInbound(s.sinks, peer, policyOf(dryRun), http, 'c3').allowed).toBe(true);
    expect(s.counts).toEqual([{ source: 'shop/web', source_zone: 'unknown', destination: 'shop/api', policy: 'shop/strict', rule: '', enforced: 'false' }]);
    expect(s.lines[0]?.msg).toBe('dry-run policy would deny HTTP request');
    expect(s.lines[0]?.fields).toMatchObject({ method: 'POST', path: '/orders', decidedBy: 'shop/strict', enforced: false });
  });

  it('neither counts nor logs an allowed request', () => {
    const s = sinks();
    const allowed: Decision = { allowed: true, enforced: true, policy: 'shop/open', rule: 0, reason: 'allowed' };
    authorizeInbound(s.sinks, peer, policyOf(allowed), { source: peer, destination, protocol: 'tcp' }, 'c4', 80);
    expect(s.counts).toEqual([]);
    expect(s.lines).toEqual([]);
  });

  it('names the decider, or default-deny when no rule matched', () => {
    expect(deciderOf({ policy: null, rule: null })).toBe('default-deny');
    expect(deciderOf({ policy: 'shop/p', rule: null })).toBe('shop/p');
    expect(deciderOf({ policy: 'shop/p', rule: 3 })).toBe('shop/p#3');
  });
});
