/**
 * deploy/kubernetes/gateway: the mesh gateway in Kubernetes mode. Its Gateway API objects have no schema in
 * kubernetes-models, so they are read by the gateway's own plan (the GatewayClass is ours, every listener
 * of the Gateway is served with a TLS Secret as `kubectl create secret tls` makes it); then what the
 * Deployment and its RBAC must be: flags the CLI documents, Secrets in memory, least privilege (the
 * Gateway API read and its statuses written cluster-wide; Secrets only by a Role in its namespace).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { V1Container } from '@kubernetes/client-node';
import { GATEWAY_API_GROUP } from '../../gateway/gateway-api.js';
import { CONTROLLER_NAME, planGateway } from '../../gateway/kubernetes/gateway-plan.js';
import type { Snapshot } from '../../gateway/kubernetes/cluster-view.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DIR = join(ROOT, 'deploy/kubernetes/gateway');
const MAIN = join(ROOT, 'dist/cli/main.js');

type K8sObject = { kind: string; metadata: { name: string; namespace?: string } };
const objects = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').flatMap((f) => parseAllDocuments(readFileSync(join(DIR, f), 'utf8')).map((d) => d.toJS() as K8sObject));
const find = (kind: string, name: string): K8sObject => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} in deploy/kubernetes/gateway`);
  return found;
};

describe('the mesh gateway (deploy/kubernetes/gateway)', () => {
  const deployment = find('Deployment', 'trellis-gateway') as unknown as { spec: { template: { spec: { serviceAccountName: string; automountServiceAccountToken: boolean; securityContext: { sysctls: { name: string; value: string }[] }; containers: V1Container[]; volumes: { name: string; emptyDir?: { medium?: string } }[] } } } };
  const container = deployment.spec.template.spec.containers[0] as V1Container;
  const gatewayRef = (container.args ?? []).find((a) => a.startsWith('--gateway='))?.slice('--gateway='.length) ?? '';
  const rules = (name: string): unknown[] => (find('ClusterRole', name) as unknown as { rules: unknown[] }).rules;

  it('runs in Kubernetes mode with flags `trellis gateway run --help` documents, Secrets in an in-memory directory', () => {
    expect(container.args?.slice(0, 3)).toEqual(['gateway', 'run', '--kubernetes']);
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
    const help = spawnSync(process.execPath, [MAIN, 'gateway', 'run', '--help'], { encoding: 'utf8' });
    for (const arg of container.args ?? []) {
      const flag = /^(--[a-z-]+)/.exec(arg)?.[1];
      if (flag !== undefined) expect(`${help.stdout}${help.stderr}`, flag).toContain(flag);
    }
    const secretDir = (container.args ?? []).find((a) => a.startsWith('--secret-dir='))?.slice('--secret-dir='.length);
    const mount = container.volumeMounts?.find((m) => m.mountPath === secretDir);
    expect(deployment.spec.template.spec.volumes.find((v) => v.name === mount?.name)?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '16Mi' });
    // It reads the API with its pod's service-account token; ports below 1024 bound as non-root.
    expect(deployment.spec.template.spec.automountServiceAccountToken).toBe(true);
    expect(deployment.spec.template.spec.securityContext.sysctls).toEqual([{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  });

  it('reads the Gateway API, Services and Namespaces cluster-wide, writes only statuses, and Secrets only in its own namespace', () => {
    expect(rules('trellis-gateway')).toEqual([
      { apiGroups: [GATEWAY_API_GROUP], resources: ['gatewayclasses', 'gateways', 'httproutes', 'grpcroutes', 'referencegrants'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: [GATEWAY_API_GROUP], resources: ['gatewayclasses/status', 'gateways/status', 'httproutes/status', 'grpcroutes/status'], verbs: ['update'] },
      { apiGroups: [''], resources: ['services', 'namespaces'], verbs: ['get', 'list', 'watch'] },
    ]);
    const role = find('Role', 'trellis-gateway-secrets') as unknown as { metadata: { namespace: string }; rules: unknown[] };
    expect(role.metadata.namespace).toBe(gatewayRef.split('/')[0]);
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }]);
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      const binding = find(kind, kind === 'RoleBinding' ? 'trellis-gateway-secrets' : 'trellis-gateway') as unknown as { subjects: unknown[] };
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: deployment.spec.template.spec.serviceAccountName, namespace: 'trellis-gateway' }]);
    }
  });

  it('serves a Gateway of its own GatewayClass whose listeners its plan accepts, on ports its Service and container expose', () => {
    const gatewayClass = find('GatewayClass', 'trellis') as unknown as Record<string, unknown>;
    expect((gatewayClass.spec as { controllerName: string }).controllerName).toBe(CONTROLLER_NAME);
    const [namespace, name] = gatewayRef.split('/') as [string, string];
    const gateway = find('Gateway', name) as unknown as Record<string, unknown> & { spec: { listeners: { name: string; port: number }[] } };
    const dir = mkdtempSync(join(tmpdir(), 'trellis-gw-manifest-'));
    spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=gateway', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')]);
    const pem = { serverCert: readFileSync(join(dir, 'c')), serverKey: readFileSync(join(dir, 'k')) };
    rmSync(dir, { recursive: true, force: true });
    const keyed = (objs: Record<string, unknown>[]): Map<string, Record<string, unknown>> => new Map(objs.map((o) => {
      const m = o.metadata as { name: string; namespace?: string };
      return [m.namespace === undefined ? m.name : `${m.namespace}/${m.name}`, o];
    }));
    const tls = { metadata: { name: 'gateway-tls', namespace }, type: 'kubernetes.io/tls', data: { 'tls.crt': pem.serverCert.toString('base64'), 'tls.key': pem.serverKey.toString('base64') } };
    const snapshot = { gatewayclasses: keyed([gatewayClass]), gateways: keyed([gateway]), httproutes: new Map(), grpcroutes: new Map(), referencegrants: new Map(), secrets: keyed([tls]), services: new Map(), namespaces: new Map() } as unknown as Snapshot;
    const plan = planGateway({ snapshot, gateway: { namespace, name }, base: { mesh: { control: 'https://trellis-control.trellis-system.svc:15012' } }, baseDir: '/', certDir: '/run/secrets', listenAddress: '0.0.0.0' });
    expect(plan.state).toBe('ours');
    if (plan.state !== 'ours') return;
    expect(plan.listeners.map((l) => [l.name, l.served !== undefined])).toEqual(gateway.spec.listeners.map((l) => [l.name, true]));
    const service = find('Service', 'trellis-gateway') as unknown as { spec: { ports: { port: number; targetPort: string }[] } };
    const containerPorts = new Map((container.ports ?? []).map((p) => [p.name, p.containerPort]));
    for (const l of gateway.spec.listeners) {
      const exposed = service.spec.ports.find((p) => containerPorts.get(p.targetPort) === l.port);
      expect(exposed, `listener ${l.name} (port ${l.port}) reached through the Service`).toBeDefined();
    }
  });
});
