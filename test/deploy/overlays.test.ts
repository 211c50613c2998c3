/**
 * The kustomize overlays rendered with `kubectl kustomize` (as `kubectl apply -k` renders them), every
 * object validated against kubernetes-models' published schemas: the single-cluster install, a zone of a
 * multi-zone mesh (control plane joined to the global, injector with CNI capture, CNI node agent, the
 * zone ingress), the global control plane, and the kind zones built on the zone overlay.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { requires } from '../helpers/requirements.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: Record<string, unknown>; [key: string]: unknown };

function render(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', join(ROOT, dir)], { encoding: 'utf8' });
  return parseAllDocuments(text).map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
}

async function validate(object: K8sObject): Promise<void> {
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  const path = group === '' ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
  if (object.kind === 'CustomResourceDefinition') return; // checked by crd.test.ts
  const module = (await import(path)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = module[object.kind];
  if (Model === undefined) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  new Model(object).validate();
}

function find(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name}`);
  return found;
}

function args(objects: readonly K8sObject[], kind: string, name: string): string[] {
  const spec = find(objects, kind, name).spec as { template: { spec: { containers: { args?: string[] }[] } } };
  return spec.template.spec.containers[0]?.args ?? [];
}

describe.skipIf(requires({ tools: ['kubectl'] }).skip)('the kustomize overlays', () => {
  for (const dir of ['deploy/kubernetes', 'deploy/kubernetes/overlays/zone', 'deploy/kubernetes/overlays/global', 'deploy/kind/overlays/east', 'deploy/kind/overlays/west']) {
    it(`${dir} renders objects that validate against the published schemas`, async () => {
      const objects = render(dir);
      expect(objects.length).toBeGreaterThan(3);
      for (const object of objects) await validate(object);
    });
  }

  it('a zone: the control plane joins the global, the injector uses CNI capture, the node agent runs on every node', () => {
    const objects = render('deploy/kubernetes/overlays/zone');
    const control = args(objects, 'Deployment', 'trellis-control');
    expect(control).toEqual(expect.arrayContaining(['--mode=kubernetes', '--zone=$(TRELLIS_ZONE)', '--global=$(TRELLIS_GLOBAL_URL)', '--global-ca=/etc/trellis/global/trust-bundle.pem', '--global-token-file=/etc/trellis/global/zone-token']));
    expect(args(objects, 'Deployment', 'trellis-injector')).toContain('--capture-mode=cni');
    const agent = find(objects, 'DaemonSet', 'trellis-cni');
    expect(agent.metadata.namespace).toBe('trellis-cni');
    expect(args(objects, 'DaemonSet', 'trellis-cni').slice(0, 2)).toEqual(['cni', 'node-agent']);
    expect((agent.spec as { template: { spec: { tolerations: unknown[] } } }).template.spec.tolerations).toEqual([{ operator: 'Exists' }]);
    // hostPath needs a privileged namespace; the mesh's own stays restricted.
    expect(find(objects, 'Namespace', 'trellis-cni').metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
    expect(find(objects, 'Namespace', 'trellis-system').metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const role = find(objects, 'ClusterRole', 'trellis-cni') as unknown as { rules: unknown[] };
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'delete'] }]);
    // The zone ingress: its Deployment joins as trellis-system/trellis-ingress, and the zone publishes its address.
    expect(args(objects, 'Deployment', 'trellis-ingress')).toEqual(expect.arrayContaining(['ingress', 'run', '--public-address=$(TRELLIS_INGRESS_ADDRESS)']));
    expect(find(objects, 'Service', 'trellis-ingress').spec).toMatchObject({ type: 'LoadBalancer' });
    expect(control).toContain('--ingress-address=$(TRELLIS_INGRESS_ADDRESS)');
  });

  it('the global control plane: --mode global with its own store volume and no cluster credentials', () => {
    const objects = render('deploy/kubernetes/overlays/global');
    expect(args(objects, 'Deployment', 'trellis-global')).toEqual(expect.arrayContaining(['control', 'run', '--mode=global', '--listen=0.0.0.0:15020']));
    expect(objects.some((o) => o.kind === 'ClusterRole' || o.kind === 'Role')).toBe(false);
    expect(find(objects, 'ServiceAccount', 'trellis-global').automountServiceAccountToken).toBe(false);
  });
});
