import { describe, expect, it } from 'vitest';
import type { UpstreamService } from '../../api/data-plane.js';
import { buildTransparentIndex, canonicalAddress } from '../../proxy/outbound/capture/destination-index.js';

const endpoint = (address: string) => ({ address, tunnelPort: 15008, zone: 'z', healthy: true });

const orders: UpstreamService = {
  name: 'orders',
  namespace: 'shop',
  ports: [
    { port: 80, targetPort: 8080, protocol: 'http' },
    { port: 5432, targetPort: 5432, protocol: 'tcp' },
  ],
  endpoints: [endpoint('10.1.0.5'), endpoint('fd00:0:0::0:7'), endpoint('orders-1.example.internal')],
  virtualIps: ['10.96.0.10'],
};

describe('transparent index', () => {
  it('maps a virtual IP by service port and an endpoint address by target port', () => {
    const index = buildTransparentIndex([orders]);
    expect(index.lookup('10.96.0.10', 80)).toEqual({ service: 'orders', namespace: 'shop', servicePort: 80, targetPort: 8080, protocol: 'http' });
    expect(index.lookup('10.1.0.5', 8080)).toEqual({ service: 'orders', namespace: 'shop', servicePort: 80, targetPort: 8080, protocol: 'http' });
    expect(index.lookup('10.1.0.5', 5432)?.protocol).toBe('tcp');
    // The workload port on the virtual IP, and the service port on the endpoint, name nothing.
    expect(index.lookup('10.96.0.10', 8080)).toBeUndefined();
    expect(index.lookup('10.1.0.5', 80)).toBeUndefined();
    expect(index.lookup('10.1.0.6', 8080)).toBeUndefined();
    expect(index.size).toBe(2 + 2 + 2);
  });

  it('matches IPv6 in the form the original-destination addon reports, and skips host names', () => {
    const index = buildTransparentIndex([orders]);
    expect(index.lookup('fd00::7', 8080)?.service).toBe('orders');
    expect(index.lookup('orders-1.example.internal', 8080)).toBeUndefined();
  });

  it('canonicalises addresses like the kernel reports them', () => {
    expect(canonicalAddress('FD00:0:0:0::1')).toBe('fd00::1');
    expect(canonicalAddress('[2001:db8:0:0:1:0:0:1]')).toBe('2001:db8::1:0:0:1');
    expect(canonicalAddress('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(canonicalAddress('::FFFF:a00:1')).toBe('10.0.0.1');
    expect(canonicalAddress('10.0.0.1')).toBe('10.0.0.1');
    expect(canonicalAddress('db.internal')).toBeUndefined();
  });

  it('resolves an address claimed twice to the first service in namespace/name order, whatever the input order, and reports it', () => {
    const a: UpstreamService = { name: 'alpha', namespace: 'shop', ports: [{ port: 80, targetPort: 9000, protocol: 'tcp' }], endpoints: [endpoint('10.1.0.9')] };
    const b: UpstreamService = { name: 'beta', namespace: 'shop', ports: [{ port: 81, targetPort: 9000, protocol: 'tcp' }], endpoints: [endpoint('10.1.0.9')] };
    for (const order of [[a, b], [b, a]]) {
      const index = buildTransparentIndex(order);
      expect(index.lookup('10.1.0.9', 9000)?.service).toBe('alpha');
      expect(index.conflicts).toEqual(['10.1.0.9:9000 is claimed by shop/alpha and shop/beta; shop/alpha is used']);
    }
  });

  it('lets a virtual IP win over an endpoint address with the same address and port', () => {
    const vip: UpstreamService = { name: 'zeta', namespace: 'shop', ports: [{ port: 80, targetPort: 80, protocol: 'tcp' }], endpoints: [], virtualIps: ['10.2.0.1'] };
    const pod: UpstreamService = { name: 'alpha', namespace: 'shop', ports: [{ port: 80, targetPort: 80, protocol: 'tcp' }], endpoints: [endpoint('10.2.0.1')] };
    expect(buildTransparentIndex([pod, vip]).lookup('10.2.0.1', 80)?.service).toBe('zeta');
  });

  it('is frozen', () => {
    const index = buildTransparentIndex([orders]);
    expect(Object.isFrozen(index)).toBe(true);
    expect(Object.isFrozen(index.lookup('10.96.0.10', 80))).toBe(true);
  });
});
