/** Helpers for policy tests: build TrafficPermissions and requests tersely. */
import type { AuthorizationRequest, PolicyRule, TrafficPermission } from '../../policy/index.js';

export const TD = 'mesh.test';

export function policy(namespace: string, name: string, destination: string, rules: PolicyRule[], mode: 'enforce' | 'dry-run' = 'enforce'): TrafficPermission {
  return { apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name, namespace }, spec: { destination, mode, rules } };
}

/** `from` "ns/svc" (or null for no identity, or "td:ns/svc" for another trust domain), `to` "ns/svc". */
export function request(from: string | null, to: string, http?: { method: string; path: string }): AuthorizationRequest {
  const [dns, dsvc] = to.split('/') as [string, string];
  let source: AuthorizationRequest['source'] = null;
  if (from !== null) {
    const colon = from.indexOf(':');
    const trustDomain = colon >= 0 ? from.slice(0, colon) : TD;
    const [ns, svc] = from.slice(colon + 1).split('/') as [string, string];
    source = { trustDomain, namespace: ns, service: svc };
  }
  return { source, destination: { namespace: dns, service: dsvc }, protocol: http === undefined ? 'tcp' : 'http', ...(http === undefined ? {} : { http }) };
}
