/**
 * Endpoints with target ports of their own (instances of one service on different app ports): the balancer
 * never picks one for a service port it does not serve, and transparent capture knows each endpoint address
 * at its own app port.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint, UpstreamService } from '../../api/data-plane.js';
import { LoadBalancer } from '../../proxy/outbound/tunnel-client/load-balancer.js';
import { routeTargetPort } from '../../proxy/outbound/route.js';
import { buildTransparentIndex } from '../../proxy/outbound/capture/destination-index.js';

const a: Endpoint = { address: '10.0.0.1', tunnelPort: 15008, zone: 'z', healthy: true };
const b: Endpoint = { address: '10.0.0.2', tunnelPort: 15008, zone: 'z', healthy: true, targetPorts: { 80: 9090 } };
const upstream: UpstreamService = {
  name: 'payments', namespace: 'shop', endpoints: [a, b],
  ports: [{ port: 80, targetPort: 8080, protocol: 'http' }, { port: 7000, targetPort: 7000, protocol: 'tcp' }],
};

describe('endpoints with target ports of their own', () => {
  it('are picked per service port and dialled at their own app port', () => {
    const balancer = new LoadBalancer({ strategy: 'round-robin' });
    balancer.setServices([upstream]);
    const route80 = { service: 'payments', namespace: 'shop', servicePort: 80, targetPort: 8080, protocol: 'http' as const };
    const picks80 = new Set(Array.from({ length: 6 }, () => balancer.pick('payments', 'shop', undefined, 80)?.endpoint).map((e) => `${e?.address}:${routeTargetPort(route80, e as Endpoint)}`));
    expect([...picks80].sort()).toEqual(['10.0.0.1:8080', '10.0.0.2:9090']);
    // B does not serve 7000: only A, even when A is out (degraded) or already tried.
    const picks7000 = new Set(Array.from({ length: 6 }, () => balancer.pick('payments', 'shop', undefined, 7000)?.endpoint.address));
    expect([...picks7000]).toEqual(['10.0.0.1']);
    expect(balancer.pick('payments', 'shop', new Set(['10.0.0.1:15008']), 7000)).toBeUndefined();
  });

  it('are known to transparent capture at their own app port', () => {
    const index = buildTransparentIndex([upstream]);
    expect(index.lookup('10.0.0.1', 8080)?.servicePort).toBe(80);
    expect(index.lookup('10.0.0.2', 9090)?.servicePort).toBe(80);
    expect(index.lookup('10.0.0.2', 8080)).toBeUndefined();
    expect(index.lookup('10.0.0.2', 7000)).toBeUndefined();
    expect(index.lookup('10.0.0.1', 7000)?.servicePort).toBe(7000);
  });
});
