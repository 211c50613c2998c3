import { describe, expect, it } from 'vitest';
import { configIssuesOf, formatConfigIssue } from '../../common/config-issues.js';
import { compilePolicy, grpcMethodOfPath, parsePolicyFiles } from '../../policy/index.js';

const POLICY = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: orders-grpc, namespace: shop }
spec:
  destination: orders
  rules:
    - action: allow
      from: [web]
      grpc: { methods: [shop.v1.Orders/Get] }
    - action: allow
      from: [admin]
      grpc: { services: [shop.v1.Orders] }
    - action: deny
      from: ["*"]
      grpc: { services: [grpc.reflection.v1.ServerReflection] }
    - action: allow
      from: [ops]
      http: { paths: ["/shop.v1.Orders/*"] }
      grpc: { methods: [shop.v1.Orders/Get, shop.v1.Orders/List] }
`;

function errorsOf(text: string): string[] {
  try {
    parsePolicyFiles([{ path: 'g.yaml', text }]);
  } catch (err) {
    return configIssuesOf(err).map(formatConfigIssue);
  }
  return [];
}

describe('gRPC policy conditions', () => {
  const policy = compilePolicy(parsePolicyFiles([{ path: 'g.yaml', text: POLICY }]), { trustDomain: 'mesh.test', rootNamespace: 'trellis-system' });
  const ask = (from: string, method: string, path: string): string => {
    const d = policy.evaluate({ source: { trustDomain: 'mesh.test', namespace: 'shop', service: from }, destination: { namespace: 'shop', service: 'orders' }, protocol: 'http', http: { method, path } });
    return d.allowed ? `allow ${d.rule}` : `deny ${d.rule ?? '-'}`;
  };

  it('matches methods exactly and services by their methods, on the normalised path of a POST', () => {
    expect(ask('web', 'POST', '/shop.v1.Orders/Get')).toBe('allow 0');
    expect(ask('web', 'POST', '/shop.v1.Orders/Delete')).toBe('deny -');
    expect(ask('web', 'GET', '/shop.v1.Orders/Get')).toBe('deny -');
    // Normalisation first: a path that resolves to the method is that method; one that does not is not.
    expect(ask('web', 'POST', '/x/../shop.v1.Orders/Get')).toBe('allow 0');
    expect(ask('web', 'POST', '//shop.v1.Orders/Get?q=1')).toBe('allow 0');
    expect(ask('web', 'POST', '/shop.v1.Orders/Get/')).toBe('deny -');
    expect(ask('web', 'POST', '/shop.v1.Orders/Get/x')).toBe('deny -');
    expect(ask('web', 'POST', '/shop.v1.Orders%2FGet')).toBe('deny -');
    expect(ask('admin', 'POST', '/shop.v1.Orders/Delete')).toBe('allow 1');
    expect(ask('admin', 'POST', '/shop.v1.Other/Delete')).toBe('deny -');
    expect(ask('admin', 'POST', '/shop.v1.Orders')).toBe('deny -');
  });

  it('denies with gRPC conditions fail closed; http and grpc on one rule must both match', () => {
    expect(ask('web', 'POST', '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo')).toBe('deny 2');
    expect(policy.evaluate({ source: { trustDomain: 'mesh.test', namespace: 'shop', service: 'web' }, destination: { namespace: 'shop', service: 'orders' }, protocol: 'tcp' }).rule).toBe(2);
    expect(ask('ops', 'POST', '/shop.v1.Orders/List')).toBe('allow 3');
    expect(ask('ops', 'POST', '/shop.v1.Orders/Delete')).toBe('deny -');
  });

  it('reports bad gRPC conditions with file, line and column', () => {
    const bad = POLICY.replace('grpc: { methods: [shop.v1.Orders/Get] }', 'grpc: { methods: [/shop.v1.Orders/Get, "shop v1"], service: [x] }').replace(
      'grpc: { services: [shop.v1.Orders] }',
      'grpc: { services: [shop.v1.Orders/Get] }',
    ).replace('grpc: { services: [grpc.reflection.v1.ServerReflection] }', 'grpc: {}');
    expect(errorsOf(bad)).toEqual([
      'g.yaml:9:58: spec.rules[0].grpc.service: unknown field (did you mean "services"?)',
      'g.yaml:9:25: spec.rules[0].grpc.methods[0]: expected "package.Service/Method" such as "shop.v1.Orders/Get" (without the leading "/"), got "/shop.v1.Orders/Get"',
      'g.yaml:9:46: spec.rules[0].grpc.methods[1]: expected "package.Service/Method" such as "shop.v1.Orders/Get", got "shop v1"',
      'g.yaml:12:26: spec.rules[1].grpc.services[0]: expected a service name such as "shop.v1.Orders" (a method goes under "methods"), got "shop.v1.Orders/Get"',
      'g.yaml:15:13: spec.rules[2].grpc: expected "services", "methods" or both (leave "grpc" out to match any request)',
    ]);
  });

  it('names the method of a gRPC path, and nothing for other paths', () => {
    expect(grpcMethodOfPath('/pkg.S/M')).toBe('pkg.S/M');
    expect(grpcMethodOfPath('/S/M')).toBe('S/M');
    for (const p of ['/', '/pkg.S', '/pkg.S/', '/pkg.S/M/x', '/pkg S/M', '/1pkg/M', 'pkg.S/M']) expect(grpcMethodOfPath(p)).toBeUndefined();
  });
});
