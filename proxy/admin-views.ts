/**
 * What the sidecar's admin port shows on `/config` and `/certs` (proxy/admin.ts): everything in force, never
 * a key. Built on request from the parts the sidecar holds.
 */
import type { AppPort } from '../api/data-plane.js';
import type { ProxyLimits } from './core/limits.js';
import type { TlsMaterial } from './core/tls-material.js';
import type { Authorizer } from './inbound/inbound-state.js';
import type { SidecarAddresses, SidecarConfig, SidecarOptions } from './sidecar-api.js';

export interface ConfigViewSource {
  readonly options: Pick<SidecarOptions, 'service' | 'namespace' | 'trustDomain' | 'zone'>;
  readonly config: SidecarConfig;
  readonly appPorts: Iterable<AppPort>;
  readonly addresses: SidecarAddresses;
  readonly limits: ProxyLimits;
  readonly poolStats: unknown;
  readonly tunnelSessionsInbound: number;
}

/** For /config: everything in force, no keys. */
export function effectiveConfigView(s: ConfigViewSource): unknown {
  const policy = s.config.policy as Authorizer & { policies?: readonly { metadata: { namespace: string; name: string } }[] };
  return {
    service: s.options.service,
    namespace: s.options.namespace,
    trustDomain: s.options.trustDomain,
    zone: s.options.zone,
    version: s.config.version ?? null,
    addresses: s.addresses,
    appPorts: [...s.appPorts],
    upstreams: s.config.upstreams,
    listeners: s.config.listeners,
    policies: policy.policies?.map((p) => `${p.metadata.namespace}/${p.metadata.name}`) ?? null,
    limits: s.limits,
    pool: s.poolStats,
    tunnelSessionsInbound: s.tunnelSessionsInbound,
  };
}

/** For /certs: the identity in use, never the key. */
export function certificatesView(m: TlsMaterial): unknown {
  return {
    spiffeId: m.spiffeId,
    notAfter: new Date(m.notAfterMs).toISOString(),
    secondsToExpiry: Math.round((m.notAfterMs - Date.now()) / 1000),
    chain: m.chain.map((c) => ({ subject: c.subject, issuer: c.issuer, serialNumber: c.serialNumber, notBefore: c.validFrom, notAfter: c.validTo, fingerprint256: c.fingerprint256, subjectAltName: c.subjectAltName ?? null })),
  };
}

