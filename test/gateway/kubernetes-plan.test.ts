/**
 * The gateway's Kubernetes plan from a snapshot of the cluster (no I/O): which listeners and routes are
 * served and the status reasons of the Gateway API for those that are not — allowedRoutes (Same, All,
 * Selector), ReferenceGrant for backendRefs and certificateRefs, missing Services and ports, foreign
 * GatewayClass — and the order of matches. Also the status writer against a fake API: a stale
 * resourceVersion is a 409, read again and written; an unchanged status is not written.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Registry } from 'prom-client';
import type { Snapshot } from '../../gateway/kubernetes/cluster-view.js';
import { CONTROLLER_NAME, planGateway, secretNamespaces, type GatewayPlan } from '../../gateway/kubernetes/gateway-plan.js';
import { StatusWriter, mergeParents } from '../../gateway/kubernetes/status-writer.js';
import { routeName, type Obj } from '../../gateway/gateway-api.js';
import { createLogger } from '../../common/log.js';
import { PATHS, startFakeGatewayApi } from '../control/fixtures/k8s-fake-api.js';
import { runCli } from '../helpers/cli.js';

const G = 'gateway.networking.k8s.io/v1';
const dir = mkdtempSync(join(tmpdir(), 'trellis-gwplan-'));

function pem(cn: string): { crt: string; key: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-keyout', join(dir, `${cn}.key`), '-out', join(dir, `${cn}.crt`)], { stdio: 'ignore' });
  return { crt: readFileSync(join(dir, `${cn}.crt`)).toString('base64'), key: readFileSync(join(dir, `${cn}.key`)).toString('base64') };
}
const good = pem('shop.example.com');
const other = pem('other.example.com');

const keyed = (objs: Obj[]): Map<string, Obj> => new Map(objs.map((o) => {
  const m = o.metadata as { name: string; namespace?: string };
  return [m.namespace === undefined ? m.name : `${m.namespace}/${m.name}`, o];
}));

function snapshot(parts: Partial<Record<keyof Snapshot, Obj[]>>): Snapshot {
  const kinds: (keyof Snapshot)[] = ['gatewayclasses', 'gateways', 'httproutes', 'grpcroutes', 'referencegrants', 'secrets', 'services', 'namespaces'];
  return Object.fromEntries(kinds.map((k) => [k, keyed(parts[k] ?? [])])) as unknown as Snapshot;
}

const ours = { metadata: { name: 'trellis' }, spec: { controllerName: CONTROLLER_NAME } };
const secret = (ns: string, name: string, data: { crt: string; key: string }): Obj => ({ metadata: { name, namespace: ns }, type: 'kubernetes.io/tls', data: { 'tls.crt': data.crt, 'tls.key': data.key } });
const service = (ns: string, name: string, port: number): Obj => ({ metadata: { name, namespace: ns }, spec: { ports: [{ port }] } });
const gateway = (listeners: Obj[], className = 'trellis'): Obj => ({ apiVersion: G, kind: 'Gateway', metadata: { name: 'edge', namespace: 'infra', generation: 3 }, spec: { gatewayClassName: className, listeners } });
const httpRoute = (ns: string, name: string, spec: Obj, created = '2026-01-01T00:00:00Z'): Obj => ({ apiVersion: G, kind: 'HTTPRoute', metadata: { name, namespace: ns, generation: 1, creationTimestamp: created }, spec: { parentRefs: [{ name: 'edge', namespace: 'infra' }], ...spec } });
const grant = (ns: string, fromKind: string, fromNs: string, toKind: string, toName?: string): Obj => ({ metadata: { name: `g-${fromNs}-${toKind}`, namespace: ns }, spec: { from: [{ group: fromKind === 'Gateway' || fromKind === 'HTTPRoute' ? 'gateway.networking.k8s.io' : '', kind: fromKind, namespace: fromNs }], to: [{ group: '', kind: toKind, ...(toName === undefined ? {} : { name: toName }) }] } });

const base = { mesh: { control: 'https://127.0.0.1:15012' } };
function plan(s: Snapshot): Extract<GatewayPlan, { state: 'ours' }> {
  const p = planGateway({ snapshot: s, gateway: { namespace: 'infra', name: 'edge' }, base, baseDir: dir, certDir: join(dir, 'certs'), listenAddress: '127.0.0.1' });
  if (p.state !== 'ours') throw new Error(p.message);
  return p;
}
const parentCond = (p: Extract<GatewayPlan, { state: 'ours' }>, name: string, type: string): { status: string; reason: string; message: string } | undefined =>
  p.routes.find((r) => r.name === name)?.parents[0]?.conditions.find((c) => c.type === type);

describe('the Kubernetes plan of a Gateway', () => {
  it('ignores a Gateway of another controller, and one whose class does not exist', () => {
    const foreign = planGateway({ snapshot: snapshot({ gatewayclasses: [{ metadata: { name: 'istio' }, spec: { controllerName: 'istio.io/gateway-controller' } }], gateways: [gateway([], 'istio')] }), gateway: { namespace: 'infra', name: 'edge' }, base, baseDir: dir, certDir: dir, listenAddress: '127.0.0.1' });
    expect(foreign).toMatchObject({ state: 'foreign' });
    expect(foreign.message).toMatch(/istio.io\/gateway-controller/);
    expect(planGateway({ snapshot: snapshot({ gateways: [gateway([])] }), gateway: { namespace: 'infra', name: 'edge' }, base, baseDir: dir, certDir: dir, listenAddress: '127.0.0.1' }).state).toBe('foreign');
  });

  it('attaches routes by allowedRoutes: Same, All and Selector', () => {
    const listeners = [
      { name: 'same', port: 8001, protocol: 'HTTP' },
      { name: 'all', port: 8002, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' } } },
      { name: 'sel', port: 8003, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'shop' }, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] } } } },
    ];
    const rule = { rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] };
    const s = snapshot({
      gatewayclasses: [ours], gateways: [gateway(listeners)],
      namespaces: [{ metadata: { name: 'shop', labels: { team: 'shop' } } }, { metadata: { name: 'dev', labels: { team: 'shop', env: 'dev' } } }, { metadata: { name: 'infra' } }],
      services: [service('shop', 'web', 80), service('dev', 'web', 80), service('infra', 'web', 80)],
      httproutes: [httpRoute('shop', 'a', rule), httpRoute('dev', 'b', rule), httpRoute('infra', 'c', rule), httpRoute('shop', 'd', { ...rule, parentRefs: [{ name: 'edge', namespace: 'infra', sectionName: 'same' }] })],
    });
    const p = plan(s);
    expect(p.routes.find((r) => r.name === 'a')?.listeners).toEqual(['all', 'sel']);
    expect(p.routes.find((r) => r.name === 'b')?.listeners).toEqual(['all']);
    expect(p.routes.find((r) => r.name === 'c')?.listeners).toEqual(['same', 'all']);
    expect(parentCond(p, 'd', 'Accepted')).toMatchObject({ status: 'False', reason: 'NotAllowedByListeners' });
  });

  it('needs a ReferenceGrant for a backendRef into another namespace, and a Service with that port', () => {
    const listeners = [{ name: 'web', port: 8001, protocol: 'HTTP' }];
    const route = (name: string, ns: string, port = 80): Obj => httpRoute('infra', name, { rules: [{ backendRefs: [{ name: 'api', namespace: ns, port }] }, { matches: [{ path: { type: 'PathPrefix', value: '/local' } }], backendRefs: [{ name: 'local', port: 80 }] }] });
    const withoutGrant = snapshot({ gatewayclasses: [ours], gateways: [gateway(listeners)], services: [service('shop', 'api', 80), service('infra', 'local', 80)], httproutes: [route('x', 'shop'), route('y', 'shop', 81), route('z', 'nowhere')] });
    let p = plan(withoutGrant);
    expect(parentCond(p, 'x', 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'RefNotPermitted' });
    expect(parentCond(p, 'x', 'Accepted')?.status).toBe('True');
    // The rule with the refused backend is left out; the other rule is served.
    expect(p.routes.find((r) => r.name === 'x')?.routes.map((r) => (r.destination as { service: string }).service)).toEqual(['local']);
    const granted = snapshot({ ...Object.fromEntries(Object.entries(withoutGrant).map(([k, v]) => [k, [...(v as Map<string, Obj>).values()]])), referencegrants: [grant('shop', 'HTTPRoute', 'infra', 'Service')], namespaces: [] } as never);
    p = plan(granted);
    expect(parentCond(p, 'x', 'ResolvedRefs')).toMatchObject({ status: 'True' });
    expect(parentCond(p, 'y', 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'BackendNotFound' });
    expect(parentCond(p, 'y', 'ResolvedRefs')?.message).toMatch(/no port 81/);
    expect(parentCond(p, 'z', 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'RefNotPermitted' });
  });

  it('judges each listener: its certificate Secret (kind, grant, content), protocol and port', () => {
    const listeners = [
      { name: 'own', port: 8443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'shop' }] } },
      { name: 'cross', port: 8444, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'shared', namespace: 'certs' }] } },
      { name: 'mismatch', port: 8445, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'broken' }] } },
      { name: 'tcp', port: 9000, protocol: 'TCP' },
      { name: 'again', port: 8443, protocol: 'HTTP' },
      { name: 'missing', port: 8446, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'absent' }] } },
    ];
    const s = (grants: Obj[]): Snapshot => snapshot({ gatewayclasses: [ours], gateways: [gateway(listeners)], referencegrants: grants, secrets: [secret('infra', 'shop', good), secret('certs', 'shared', good), secret('infra', 'broken', { crt: good.crt, key: other.key })] });
    const byName = (p: Extract<GatewayPlan, { state: 'ours' }>, name: string): { served: unknown; conditions: readonly { type: string; status: string; reason: string }[] } => p.listeners.find((l) => l.name === name) as never;
    const reason = (p: Extract<GatewayPlan, { state: 'ours' }>, name: string, type: string): string | undefined => byName(p, name).conditions.find((c) => c.type === type && c.status === 'False')?.reason;
    let p = plan(s([]));
    expect(byName(p, 'own').served).toBeDefined();
    expect(reason(p, 'cross', 'ResolvedRefs')).toBe('RefNotPermitted');
    expect(reason(p, 'mismatch', 'ResolvedRefs')).toBe('InvalidCertificateRef');
    expect(reason(p, 'missing', 'ResolvedRefs')).toBe('InvalidCertificateRef');
    expect(reason(p, 'tcp', 'Accepted')).toBe('UnsupportedProtocol');
    expect(reason(p, 'again', 'Accepted')).toBe('PortUnavailable');
    expect(p.accepted).toMatchObject({ status: 'True', reason: 'ListenersNotValid' });
    expect([...p.secrets.keys()]).toEqual(['infra/shop']);
    // The Secrets of another namespace are not even read without a grant.
    expect([...secretNamespaces(s([]), { namespace: 'infra', name: 'edge' })]).toEqual(['infra']);
    expect([...secretNamespaces(s([grant('certs', 'Gateway', 'infra', 'Secret', 'shared')]), { namespace: 'infra', name: 'edge' })]).toEqual(['infra', 'certs']);
    p = plan(s([grant('certs', 'Gateway', 'infra', 'Secret', 'shared')]));
    expect(byName(p, 'cross').served).toBeDefined();
    expect([...p.secrets.keys()].sort()).toEqual(['certs/shared', 'infra/shop']);
    // A grant for another Secret name, or from another namespace, grants nothing.
    expect(reason(plan(s([grant('certs', 'Gateway', 'infra', 'Secret', 'other')])), 'cross', 'ResolvedRefs')).toBe('RefNotPermitted');
    expect(reason(plan(s([grant('certs', 'Gateway', 'elsewhere', 'Secret')])), 'cross', 'ResolvedRefs')).toBe('RefNotPermitted');
  });

  it('orders matches as the Gateway API does: exact path, longest prefix, method, headers, then the oldest route', () => {
    const listeners = [{ name: 'web', port: 8001, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' } } }];
    const b = [{ name: 'web', port: 80 }];
    const s = snapshot({
      gatewayclasses: [ours], gateways: [gateway(listeners)], services: [service('infra', 'web', 80)],
      httproutes: [
        httpRoute('infra', 'young', { rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: b }] }, '2026-02-01T00:00:00Z'),
        httpRoute('infra', 'old', { rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: b }] }, '2025-01-01T00:00:00Z'),
        httpRoute('infra', 'long', { rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/a/b' } }, { path: { type: 'PathPrefix', value: '/a' }, method: 'GET' }], backendRefs: b }] }),
        httpRoute('infra', 'exact', { rules: [{ matches: [{ path: { type: 'Exact', value: '/a' } }], backendRefs: b }] }),
      ],
    });
    const names = (plan(s).value?.routes as { name: string }[]).map((r) => r.name);
    expect(names).toEqual(['infra-exact-0-0-web', 'infra-long-0-0-web', 'infra-long-0-1-web', 'infra-old-0-0-web', 'infra-young-0-0-web']);
  });

  it('gives routes whose names meet (a-b/c and a/b-c, an HTTPRoute and a GRPCRoute of one name) names of their own', () => {
    const listeners = [{ name: 'web', port: 8001, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' } } }];
    const rules = { rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] };
    const s = snapshot({
      gatewayclasses: [ours], gateways: [gateway(listeners)], services: [service('a-b', 'web', 80), service('a', 'web', 80)],
      httproutes: [httpRoute('a-b', 'c', rules), httpRoute('a', 'b-c', rules)],
      grpcroutes: [{ ...httpRoute('a', 'b-c', rules), kind: 'GRPCRoute' }],
    });
    const names = (plan(s).value?.routes as { name: string }[]).map((r) => r.name);
    expect(names).toHaveLength(3);
    expect(new Set(names).size).toBe(3);
  });

  it('keeps long route names unique (a DNS label with a hash of the whole)', () => {
    const a = routeName(`${'n'.repeat(40)}-${'r'.repeat(30)}-0-0-web`);
    const b = routeName(`${'n'.repeat(40)}-${'r'.repeat(30)}-0-1-web`);
    expect(a).not.toBe(b);
    expect(a.length).toBeLessThanOrEqual(63);
    expect(a).toMatch(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/);
  });
});

describe('the status writer', () => {
  it('writes on a change only, re-reads and retries after 409 Conflict, and keeps other controllers\' entries', async () => {
    const api = await startFakeGatewayApi();
    try {
      const kc = api.kubeConfig();
      const writes = new Counter({ name: 'w', help: 'w', labelNames: ['kind', 'result'], registers: [new Registry()] });
      const writer = new StatusWriter(kc, createLogger({ name: 't', level: 'silent' }), writes);
      const foreign = { parentRef: { name: 'other-gw' }, controllerName: 'example.com/other', conditions: [{ type: 'Accepted', status: 'True' }] };
      const stale = api.apply(PATHS.httpRoutes, httpRoute('infra', 'r', {}));
      api.apply(PATHS.httpRoutes, { ...httpRoute('infra', 'r', {}), status: { parents: [foreign] } });
      const gw = { namespace: 'infra', name: 'edge' };
      const ours = [{ parentRef: { name: 'edge', namespace: 'infra' }, conditions: [{ type: 'Accepted', status: 'True' as const, reason: 'Accepted', message: 'ok' }] }];
      const target = { plural: 'httproutes' as const, object: stale, desired: (current: Obj) => mergeParents(current, 'infra', gw, ours, 1, '2026-01-01T00:00:00Z') };
      expect(await writer.write(target)).toBe(true);
      const puts = api.statusWrites('httproutes');
      expect(puts).toHaveLength(2);
      const stored = api.get(PATHS.httpRoutes, 'infra/r') as { status: { parents: { controllerName: string }[] } };
      expect(stored.status.parents.map((p) => p.controllerName)).toEqual(['example.com/other', CONTROLLER_NAME]);
      // The same desired status again (from the stored object): nothing written.
      expect(await writer.write({ ...target, object: api.get(PATHS.httpRoutes, 'infra/r') as Obj, desired: (current: Obj) => mergeParents(current, 'infra', gw, ours, 1, '2026-06-01T00:00:00Z') })).toBe(false);
      expect(api.statusWrites('httproutes')).toHaveLength(2);
    } finally {
      await api.close();
    }
  });
});

describe('trellis gateway run --kubernetes: usage refused before anything starts', () => {
  it('needs --gateway NS/NAME, --kubernetes for its flags, and a base file without listeners or routes', async () => {
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{ name: c, cluster: { server: "https://127.0.0.1:1" } }]\nusers: [{ name: u, user: { token: t } }]\ncontexts: [{ name: c, context: { cluster: c, user: u } }]\ncurrent-context: c\n');
    const base = join(dir, 'base.yaml');
    writeFileSync(base, 'mesh: { control: "https://127.0.0.1:15012" }\nlisteners: [{ name: web, port: 80, protocol: http }]\n');
    const cases: [string[], RegExp][] = [
      [['--config', base, '--gateway', 'infra/edge'], /--gateway needs --kubernetes/],
      [['--config', base, '--kubernetes', '--kubeconfig', kubeconfig], /--gateway NAMESPACE\/NAME/],
      [['--config', base, '--kubernetes', '--kubeconfig', kubeconfig, '--gateway', 'edge'], /--gateway NAMESPACE\/NAME/],
      [['--config', base, '--kubernetes', '--kubeconfig', kubeconfig, '--gateway', 'infra/edge'], /"listeners" comes from the Gateway API/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['gateway', 'run', ...args]);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    writeFileSync(base, 'mesh: { control: "http://127.0.0.1:15012" }\n');
    const r = await runCli(['gateway', 'run', '--config', base, '--kubernetes', '--kubeconfig', kubeconfig, '--gateway', 'infra/edge']);
    expect(r.stderr).toMatch(/https:\/\/ URL/);
  });
});
