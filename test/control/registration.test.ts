/**
 * The registration an agent sends on its watch, validated at the edge: upstream wildcards (`*` / `*`,
 * `ns/*`) accepted, a wildcard namespace with a named service refused, every problem listed at once.
 */
import { describe, expect, it } from 'vitest';
import { validateRegistration } from '../../control/registration.js';

const body = (upstreams: unknown) => ({ registration: { instanceId: 'i-1', address: '10.0.0.1', tunnelPort: 15008, ports: [], healthy: true, upstreams, agentVersion: 't' } });

describe('validateRegistration, upstreams', () => {
  it('accepts names, every service of a namespace, and every service of the mesh', () => {
    expect(validateRegistration(body([{ service: 'orders', namespace: 'shop' }, { service: '*', namespace: 'bank' }, { service: '*', namespace: '*' }])).upstreams).toEqual([
      { service: 'orders', namespace: 'shop' },
      { service: '*', namespace: 'bank' },
      { service: '*', namespace: '*' },
    ]);
  });

  it('refuses a named service in every namespace, and other non-names, listing each', () => {
    let message = '';
    try {
      validateRegistration(body([{ service: 'orders', namespace: '*' }, { service: 'Or*', namespace: 'shop' }, { service: '*' }]));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/upstreams\[0\]: namespace "\*" needs service "\*"/);
    expect(message).toMatch(/upstreams\[1\]: \{service: DNS label or "\*"/);
    expect(message).toMatch(/upstreams\[2\]: /);
  });
});

describe('validateRegistration, export', () => {
  const withExport = (value: unknown) => ({ registration: { ...body([]).registration, export: value } });

  it('carries true or false, and leaves an absent word absent', () => {
    expect(validateRegistration(withExport(true)).export).toBe(true);
    expect(validateRegistration(withExport(false)).export).toBe(false);
    expect('export' in validateRegistration(body([]))).toBe(false);
  });

  it('refuses anything else (a string "true" is not a word)', () => {
    for (const bad of ['true', 1, null, {}]) expect(() => validateRegistration(withExport(bad))).toThrow(/export: true, false or absent/);
  });
});
