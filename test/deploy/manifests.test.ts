/**
 * Every Kubernetes manifest in deploy/ (but deploy/vm and deploy/examples, which are not Kubernetes
 * objects), parsed and validated against the published Kubernetes schemas of kubernetes-models; a kind
 * with no schema there fails the test rather than going unchecked. Then what a schema cannot say: the
 * webhook's safety settings, least-privilege RBAC, locked-down containers, Services that reach their pods,
 * flags the CLI really accepts, and the sample workloads going through the injector into valid pods.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { WEBHOOK_PATHS } from '../../injector/webhook-server.js';
import { SYSTEM_NAMESPACES, createInjectorConfig } from '../../injector/config.js';
import { handleAdmissionReview } from '../../injector/admission-handler.js';
import { applyPatch, decodePatch, testDeps, unknownFields, validatePod } from '../injector/review-helpers.js';
import * as k8s from '@kubernetes/client-node';
import { createTestPki } from '../helpers/pki.js';
import { CA_FILES, keyFileProblem } from '../../ca/store.js';
import { GATEWAY_API_GROUP } from '../../gateway/gateway-api.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DEPLOY = join(ROOT, 'deploy');
const MAIN = join(ROOT, 'dist/cli/main.js');

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [key: string]: unknown };

interface Manifest {
  readonly file: string;
  readonly object: K8sObject;
}

/**
 * Files that are not Kubernetes API objects: kind cluster configs and kustomizations (checked below), and
 * Prometheus rules (observability/, checked by observability.test.ts).
 */
function isKubernetesManifest(file: string): boolean {
  const rel = relative(DEPLOY, file);
  if (rel.startsWith('vm/') || rel.startsWith('examples/') || rel.startsWith('observability/')) return false;
  if (/^kind\/(east|west|global)\.yaml$/.test(rel)) return false;
  return !file.endsWith('kustomization.yaml');
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of yamlFiles(DEPLOY).filter(isKubernetesManifest)) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      expect(doc.errors, `${relative(ROOT, file)}: YAML errors`).toEqual([]);
      const object = doc.toJS() as K8sObject | null;
      if (object !== null) out.push({ file: relative(ROOT, file), object });
    }
  }
  return out;
}

const manifests = loadManifests();
const find = (kind: string, name: string): K8sObject => {
  const found = manifests.find((m) => m.object.kind === kind && m.object.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} in deploy/`);
  return found.object;
};

/** kubernetes-models module for an apiVersion: core "v1" is `kubernetes-models/v1`, others by group. */
async function modelFor(apiVersion: string, kind: string): Promise<(new (data: unknown) => { validate(): void }) | undefined> {
  if (apiVersion === 'trellis.dev/v1alpha1') return undefined;
  const module = (await import(`kubernetes-models/${apiVersion}`)) as Record<string, new (data: unknown) => { validate(): void }>;
  return module[kind];
}

describe('every manifest in deploy/', () => {
  it('finds the manifests it must check', () => {
    const kinds = new Set(manifests.map((m) => m.object.kind));
    for (const kind of ['Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Service', 'Deployment', 'MutatingWebhookConfiguration', 'PodDisruptionBudget', 'ConfigMap', 'TrafficPermission']) {
      expect(kinds, kind).toContain(kind);
    }
  });

  it('validates against the Kubernetes schemas of kubernetes-models (and no kind goes unchecked)', async () => {
    const problems: string[] = [];
    for (const { file, object } of manifests) {
      if (object.apiVersion === 'trellis.dev/v1alpha1') continue; // validated by its CRD schema in crd.test.ts
      if (object.apiVersion.startsWith(`${GATEWAY_API_GROUP}/`)) continue; // no schema in kubernetes-models: read by the gateway's own plan (gateway-manifests.test.ts)
      const Model = await modelFor(object.apiVersion, object.kind);
      if (Model === undefined) {
        problems.push(`${file}: ${object.apiVersion} ${object.kind} has no schema in kubernetes-models`);
        continue;
      }
      try {
        new Model(object).validate();
      } catch (err) {
        problems.push(`${file}: ${object.kind} ${object.metadata.name}: ${(err as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('has no unknown fields (as kubectl apply, strict by default, would refuse)', () => {
    const problems: string[] = [];
    for (const { file, object } of manifests) {
      if (object.apiVersion === 'trellis.dev/v1alpha1' || object.apiVersion.startsWith(`${GATEWAY_API_GROUP}/`)) continue;
      const type = `V1${object.kind}`;
      if ((k8s as unknown as Record<string, unknown>)[type] === undefined) problems.push(`${file}: no model ${type}`);
      for (const field of unknownFields(object, type)) problems.push(`${file}: ${object.kind} ${object.metadata.name}: unknown field ${field}`);
    }
    expect(problems).toEqual([]);
    expect(unknownFields({ spec: { replicas: 1, replica: 2 } }, 'V1Deployment')).toEqual(['$.spec.replica']);
  });

  it('the schemas do catch mistakes (a Deployment with a string replica count)', async () => {
    const Model = await modelFor('apps/v1', 'Deployment');
    const broken = structuredClone(find('Deployment', 'trellis-injector')) as unknown as { spec: { replicas: unknown } };
    broken.spec.replicas = 'two';
    expect(() => new Model!(broken).validate()).toThrow(/replicas must be integer/);
  });
});

describe('the MutatingWebhookConfiguration', () => {
  const config = find('MutatingWebhookConfiguration', 'trellis-injector') as unknown as {
    webhooks: {
      name: string;
      clientConfig: { service: { name: string; namespace: string; path: string; port: number }; caBundle?: string };
      failurePolicy: string;
      sideEffects: string;
      timeoutSeconds: number;
      reinvocationPolicy: string;
      admissionReviewVersions: string[];
      rules: { operations: string[]; apiGroups: string[]; apiVersions: string[]; resources: string[] }[];
      namespaceSelector: { matchExpressions: { key: string; operator: string; values?: string[] }[] };
      objectSelector: { matchExpressions: { key: string; operator: string; values?: string[] }[] };
    }[];
  };

  it('fails closed, has no side effects, answers within 10 s, is reinvoked, and speaks v1', () => {
    for (const webhook of config.webhooks) {
      expect(webhook).toMatchObject({ failurePolicy: 'Fail', sideEffects: 'None', reinvocationPolicy: 'IfNeeded', admissionReviewVersions: ['v1'] });
      expect(webhook.timeoutSeconds).toBeLessThanOrEqual(10);
      expect(webhook.rules).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
      expect(webhook.clientConfig.caBundle).toBeUndefined(); // written by the injector, never by kubectl apply
    }
  });

  it('is scoped to labelled namespaces (or opted-in pods) and never to system namespaces', () => {
    const [byNamespace, byPod] = config.webhooks;
    expect(byNamespace!.namespaceSelector.matchExpressions).toContainEqual({ key: 'trellis.dev/injection', operator: 'In', values: ['enabled'] });
    expect(byNamespace!.objectSelector.matchExpressions).toContainEqual({ key: 'trellis.dev/inject', operator: 'NotIn', values: ['false'] });
    expect(byPod!.namespaceSelector.matchExpressions).toContainEqual({ key: 'trellis.dev/injection', operator: 'DoesNotExist' });
    expect(byPod!.objectSelector.matchExpressions).toContainEqual({ key: 'trellis.dev/inject', operator: 'In', values: ['true'] });
    for (const webhook of config.webhooks) {
      const excluded = webhook.namespaceSelector.matchExpressions.find((e) => e.key === 'kubernetes.io/metadata.name');
      expect(excluded?.operator).toBe('NotIn');
      expect([...(excluded?.values ?? [])].sort()).toEqual([...SYSTEM_NAMESPACES].sort());
    }
  });

  it('calls the paths the injector serves, through the injector Service', () => {
    const service = find('Service', 'trellis-injector') as unknown as { metadata: { namespace: string }; spec: { ports: { port: number; targetPort: string }[] } };
    expect(config.webhooks.map((w) => w.clientConfig.service.path).sort()).toEqual(Object.keys(WEBHOOK_PATHS).sort());
    expect(WEBHOOK_PATHS[config.webhooks[0]!.clientConfig.service.path]).toBe('namespace');
    expect(WEBHOOK_PATHS[config.webhooks[1]!.clientConfig.service.path]).toBe('opt-in');
    for (const webhook of config.webhooks) {
      expect(webhook.clientConfig.service).toMatchObject({ name: 'trellis-injector', namespace: service.metadata.namespace });
      expect(service.spec.ports.map((p) => p.port)).toContain(webhook.clientConfig.service.port);
    }
  });
});

describe('RBAC is least privilege', () => {
  const rules = (name: string) => (find('ClusterRole', name) as unknown as { rules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] }).rules;

  it('the control plane reads what the registry and policy need, reviews tokens, records Events, and nothing else', () => {
    expect(rules('trellis-control')).toEqual([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: [''], resources: ['pods', 'services', 'namespaces'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['trellis.dev'], resources: ['trafficpermissions', 'trafficroutes', 'retrypolicies', 'timeoutpolicies', 'outlierdetections', 'circuitbreakers', 'zonefailovers'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['create'] },
    ]);
  });

  it('the injector records Events, patches its own webhook configuration and reads namespaces only', () => {
    expect(rules('trellis-injector')).toEqual([
      { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: ['trellis-injector'], verbs: ['get', 'patch'] },
      { apiGroups: [''], resources: ['namespaces'], verbs: ['get'] },
    ]);
  });

  it('no role uses wildcards or touches secrets, and each binding names its own ServiceAccount', () => {
    for (const { object } of manifests.filter((m) => m.object.kind === 'ClusterRole')) {
      const text = JSON.stringify(object);
      expect(text).not.toContain('"*"');
      expect(text).not.toContain('secrets');
    }
    for (const name of ['trellis-control', 'trellis-injector']) {
      const binding = find('ClusterRoleBinding', name) as unknown as { roleRef: { name: string }; subjects: { kind: string; name: string; namespace: string }[] };
      expect(binding.roleRef.name).toBe(name);
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name, namespace: 'trellis-system' }]);
      find('ServiceAccount', name);
    }
  });
});

describe('the Deployments', () => {
  const deployments = manifests.filter((m) => m.object.kind === 'Deployment' && m.object.metadata.namespace === 'trellis-system').map((m) => m.object) as unknown as {
    metadata: { name: string };
    spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: { serviceAccountName: string; securityContext: Record<string, unknown>; containers: V1Container[]; volumes?: { secret?: { secretName: string }; configMap?: { name: string } }[] } } };
  }[];

  it('run non-root, read-only, with no capabilities and resource requests', () => {
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(['trellis-control', 'trellis-ingress', 'trellis-injector']);
    for (const d of deployments) {
      expect(d.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      for (const c of d.spec.template.spec.containers) {
        expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
        expect(c.resources?.requests).toBeDefined();
        expect(c.readinessProbe).toBeDefined();
      }
      expect(Object.entries(d.spec.selector.matchLabels).every(([k, v]) => d.spec.template.metadata.labels[k] === v)).toBe(true);
      find('ServiceAccount', d.spec.template.spec.serviceAccountName);
    }
  });

  it('are reached by Services whose selectors and named target ports match', () => {
    for (const name of ['trellis-control', 'trellis-injector', 'trellis-ingress']) {
      const service = find('Service', name) as unknown as { spec: { selector: Record<string, string>; ports: { targetPort: string }[] } };
      const deployment = deployments.find((d) => d.metadata.name === name)!;
      expect(Object.entries(service.spec.selector).every(([k, v]) => deployment.spec.template.metadata.labels[k] === v)).toBe(true);
      const portNames = deployment.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.name));
      for (const port of service.spec.ports) expect(portNames).toContain(port.targetPort);
    }
  });

  it('read ConfigMap keys that exist, and Secrets and ConfigMap volumes that deploy/kind/up.sh creates', () => {
    const configMap = find('ConfigMap', 'trellis-mesh') as unknown as { data: Record<string, string> };
    const script = readFileSync(join(DEPLOY, 'kind/up.sh'), 'utf8');
    for (const d of deployments) {
      for (const c of d.spec.template.spec.containers) {
        for (const env of c.env ?? []) {
          const ref = env.valueFrom?.configMapKeyRef;
          if (ref !== undefined) expect(Object.keys(configMap.data), `${c.name} env ${env.name}`).toContain(ref.key);
        }
      }
      for (const volume of d.spec.template.spec.volumes ?? []) {
        if (volume.secret !== undefined) expect(script).toContain(`create secret generic ${volume.secret.secretName}`);
        if (volume.configMap !== undefined) expect(script).toContain(`create configmap ${volume.configMap.name}`);
      }
    }
  });

  it('pass only flags that `trellis <command> run --help` documents', () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
    for (const d of deployments) {
      for (const c of d.spec.template.spec.containers) {
        const [command, sub] = c.args ?? [];
        // `control run --help` prints its usage on stderr with exit 2; `injector run --help` on stdout.
        const result = spawnSync(process.execPath, [MAIN, command as string, sub as string, '--help'], { encoding: 'utf8' });
        const help = `${result.stdout}${result.stderr}`;
        expect(help, `${command} ${sub} --help`).toMatch(/Usage: trellis/);
        for (const arg of c.args ?? []) {
          const flag = /^(--[a-z-]+)/.exec(arg)?.[1];
          if (flag !== undefined) expect(help, `${d.metadata.name}: ${flag}`).toContain(flag);
        }
      }
    }
  });
});

describe('the control plane Deployment', () => {
  // YAML 1.1 as kubectl reads it: there `defaultMode: 0440` is octal (YAML 1.2 would read decimal 440).
  const control = parseAllDocuments(readFileSync(join(DEPLOY, 'kubernetes/base/control-plane.yaml'), 'utf8'), { version: '1.1' })
    .map((d) => d.toJS() as K8sObject)
    .find((o) => o.kind === 'Deployment') as unknown as { spec: { template: { spec: { securityContext: { runAsUser: number; runAsGroup: number; fsGroup?: number }; containers: V1Container[]; volumes: { name: string; secret?: { defaultMode?: number } }[] } } } };
  const pod = control.spec.template.spec;
  const container = pod.containers.find((c) => c.name === 'control') as V1Container;

  it('runs in Kubernetes mode, with policy from TrafficPermission resources (no --policy)', () => {
    expect(container.args).toContain('--mode=kubernetes');
    expect((container.args ?? []).filter((a) => a.startsWith('--policy') || a.startsWith('--kubeconfig'))).toEqual([]);
  });

  it('is not held to the sidecar heap the image sets, and its heap fits its memory limit', () => {
    const dockerfile = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/ENV NODE_OPTIONS="[^"]*--max-old-space-size=256/);
    const nodeOptions = container.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
    const heapMiB = Number(/--max-old-space-size=(\d+)/.exec(nodeOptions)?.[1]);
    const limit = /^(\d+)(Mi|Gi)$/.exec(String(container.resources?.limits?.memory ?? ''));
    const limitMiB = Number(limit?.[1]) * (limit?.[2] === 'Gi' ? 1024 : 1);
    expect(heapMiB).toBeGreaterThan(256);
    // Room beside the old space for new space, code, buffers and TLS: at most 80 % of the limit.
    expect(heapMiB).toBeLessThanOrEqual(limitMiB * 0.8);
  });

  it('mounts the root CA Secret so that the control plane may read ca.key by the key file rule', () => {
    const { runAsUser, runAsGroup, fsGroup } = pod.securityContext;
    const defaultMode = pod.volumes.find((v) => v.name === 'root-ca')?.secret?.defaultMode ?? 0o644;
    expect(defaultMode).toBe(0o440);
    // What the kubelet makes of a Secret volume: owner root; with an fsGroup, group fsGroup and group-read added.
    const mounted = (group: number | undefined): { mode: number; uid: number; gid: number } => ({ mode: group === undefined ? defaultMode : defaultMode | 0o440, uid: 0, gid: group ?? 0 });
    const process = { uid: runAsUser, gids: [runAsGroup, ...(fsGroup === undefined ? [] : [fsGroup])] };
    expect(keyFileProblem(`/etc/trellis/root-ca/${CA_FILES.key}`, mounted(fsGroup), process)).toBeUndefined();
    // Without the fsGroup the file would be root's group's, which the rule (rightly) refuses.
    expect(keyFileProblem(`/etc/trellis/root-ca/${CA_FILES.key}`, mounted(undefined), { uid: runAsUser, gids: [runAsGroup] })).toMatch(/not in/);
    // A world-readable defaultMode would be refused at start-up.
    expect(keyFileProblem(`/etc/trellis/root-ca/${CA_FILES.key}`, { ...mounted(fsGroup), mode: 0o444 }, process)).toMatch(/others can access it/);
  });
});

describe('the sample workloads, through the injector', () => {
  let bundlePem = '';
  beforeAll(async () => {
    bundlePem = (await createTestPki()).bundlePem;
  });

  it('become valid injected pods (as the ReplicaSet controller would create them)', async () => {
    const samples = manifests.filter((m) => m.file.startsWith('deploy/kind/samples/') && m.object.kind === 'Deployment');
    expect(samples.map((s) => s.object.metadata.name).sort()).toEqual(['frontend', 'orders', 'payments']);
    const config = createInjectorConfig({ image: 'trellis:dev', controlUrl: 'https://trellis-control.trellis-system.svc:15012', zone: 'east', trustBundlePem: bundlePem, kubernetesVersion: { major: 1, minor: 30 } });
    const namespace = find('Namespace', 'shop');
    expect(namespace.metadata.labels?.['trellis.dev/injection']).toBe('enabled');
    for (const { object } of samples) {
      const template = (object as unknown as { spec: { template: V1Pod } }).spec.template;
      const pod: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { ...template.metadata, generateName: `${object.metadata.name}-5d9c7b6f4-` }, spec: template.spec };
      const review = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: `uid-${object.metadata.name}`, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'shop', operation: 'CREATE', object: pod } };
      const handled = await handleAdmissionReview(review, 'namespace', testDeps(config));
      expect(handled.result, object.metadata.name).toBe('injected');
      const injected = applyPatch(pod, decodePatch(handled.review));
      validatePod(injected);
      expect(injected.spec?.initContainers?.map((c) => c.name)).toEqual(['trellis-init', 'trellis-proxy']);
    }
  });
});
