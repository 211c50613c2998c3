/**
 * `trellis check` against a cluster (kubeconfig): the control plane Deployment ready, the injector's
 * MutatingWebhookConfiguration with a caBundle that parses, agrees across its webhooks, is not near expiry
 * and (given the mesh trust bundle) chains to it; the CNI node agent where CNI capture is used; and every
 * namespace labelled for injection able to admit an injected pod under its Pod Security level and capture
 * mode, judged by the injector's own code on a pod that satisfies `restricted` by itself.
 */
import { X509Certificate } from 'node:crypto';
import { AdmissionregistrationV1Api, AppsV1Api, CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { makeTrellisApiClient } from '../common/kubernetes-client.js';
import { LABEL_CAPTURE_MODE, type CaptureMode } from '../common/mesh-annotations.js';
import { LABEL_NAMESPACE_INJECTION } from '../injector/annotations.js';
import { createInjectorConfig } from '../injector/config.js';
import { injectedPod, mutatePod } from '../injector/mutation.js';
import { namespaceFacts } from '../injector/namespace-facts.js';
import { formatViolations, violationsAddedBy } from '../injector/pod-security.js';
import { certificateFindings, fail, ok, splitPem, warn, type Finding } from './check-findings.js';

export interface KubernetesCheckInput {
  readonly kc: KubeConfig;
  readonly systemNamespace: string;
  readonly trustBundlePem?: string;
  readonly now: Date;
  readonly warnDays: number;
}

const SAMPLE_POD: V1Pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'trellis-check-', labels: { app: 'trellis-check' } },
  spec: {
    securityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } },
    containers: [{ name: 'app', image: 'registry.example/app:1', ports: [{ containerPort: 8080, name: 'http' }], securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
  },
};
/** Only for building the sample patch: its content is never sent anywhere. */
const PLACEHOLDER_PEM = '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n';

function apiError(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  return e.code !== undefined ? `HTTP ${e.code}` : (e.message ?? String(err));
}

/** The injector's mesh-wide capture mode, from its Deployment's `--capture-mode` argument. */
function injectorCaptureMode(args: readonly string[]): CaptureMode {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    const value = arg.startsWith('--capture-mode=') ? arg.slice('--capture-mode='.length) : arg === '--capture-mode' ? args[i + 1] : undefined;
    if (value === 'cni') return 'cni';
  }
  return 'init';
}

async function webhookFindings(input: KubernetesCheckInput, admission: AdmissionregistrationV1Api): Promise<Finding[]> {
  let config;
  try {
    config = await admission.readMutatingWebhookConfiguration({ name: 'trellis-injector' });
  } catch (err) {
    return [fail('injector webhook', `MutatingWebhookConfiguration trellis-injector: ${apiError(err)}`, 'apply deploy/kubernetes (kubectl apply -k deploy/kubernetes/overlays/zone)')];
  }
  const bundles = (config.webhooks ?? []).map((w) => w.clientConfig.caBundle ?? '');
  if (bundles.length === 0 || bundles.some((b) => b === '')) return [fail('injector webhook caBundle', 'empty in at least one webhook: the API server cannot call the injector, and pods in meshed namespaces fail to create', 'the injector fills it in at start: check `kubectl -n trellis-system logs deploy/trellis-injector` (RBAC get/patch on the configuration)')];
  if (new Set(bundles).size > 1) return [fail('injector webhook caBundle', 'the webhooks carry different caBundles', 'restart the injector: it writes one bundle into every webhook')];
  const pem = Buffer.from(bundles[0] ?? '', 'base64').toString('utf8');
  const findings = certificateFindings('injector webhook caBundle', pem, input.now, input.warnDays, 'the injector follows the mesh CA: rotate the CA (`trellis ca rotate`) and restart the injector');
  if (input.trustBundlePem !== undefined) {
    const roots = new Set(splitPem(input.trustBundlePem).map((p) => new X509Certificate(p).fingerprint256));
    const matching = splitPem(pem).filter((p) => roots.has(new X509Certificate(p).fingerprint256));
    findings.push(matching.length > 0 ? ok('injector webhook caBundle matches', 'holds a root of the mesh trust bundle') : fail('injector webhook caBundle matches', 'holds none of the mesh trust bundle\'s roots: it was written for another CA', 'restart the injector so it writes the current bundle (or fix its --issuer-dir / --ca-bundle)'));
  }
  return findings;
}

async function namespaceFindings(core: CoreV1Api, meshMode: CaptureMode, cniReady: boolean): Promise<Finding[]> {
  const list = await core.listNamespace({ labelSelector: `${LABEL_NAMESPACE_INJECTION}=enabled` });
  if (list.items.length === 0) return [warn('meshed namespaces', `no namespace is labelled ${LABEL_NAMESPACE_INJECTION}=enabled`, `kubectl label namespace NAME ${LABEL_NAMESPACE_INJECTION}=enabled`)];
  const config = createInjectorConfig({ image: 'trellis:check', controlUrl: 'https://trellis-control.trellis-system.svc:15012', trustBundlePem: PLACEHOLDER_PEM, captureMode: meshMode });
  const findings: Finding[] = [];
  for (const ns of list.items) {
    const name = ns.metadata?.name ?? '';
    const facts = namespaceFacts(ns.metadata?.labels ?? {});
    const check = `namespace ${name}`;
    if (facts.badCaptureMode !== undefined) {
      findings.push(fail(check, `${LABEL_CAPTURE_MODE}="${facts.badCaptureMode}" is not init or cni: every pod is refused`, `kubectl label namespace ${name} ${LABEL_CAPTURE_MODE}=cni --overwrite`));
      continue;
    }
    const mode = facts.captureMode ?? meshMode;
    const result = mutatePod(SAMPLE_POD, name, 'namespace', config, mode);
    if (result.outcome !== 'injected') continue;
    const added = violationsAddedBy(SAMPLE_POD, injectedPod(SAMPLE_POD, result.parts), facts.podSecurity);
    if (added.length > 0) {
      findings.push(fail(check, `Pod Security "${facts.podSecurity}" with capture mode ${mode}: injected pods are refused (${formatViolations(facts.podSecurity, facts.podSecurityVersion, added)})`, `kubectl label namespace ${name} ${LABEL_CAPTURE_MODE}=cni (with the trellis-cni DaemonSet running), or relax pod-security.kubernetes.io/enforce`));
    } else if (mode === 'cni' && !cniReady) {
      findings.push(fail(check, 'capture mode cni, but the trellis-cni node agent is not ready on every node: new pods stay unready', 'kubectl apply -k deploy/kubernetes/overlays/zone, then kubectl -n trellis-cni rollout status ds/trellis-cni'));
    } else {
      findings.push(ok(check, `admits injected pods (Pod Security "${facts.podSecurity}", capture mode ${mode})`));
    }
  }
  return findings;
}

export async function kubernetesFindings(input: KubernetesCheckInput): Promise<Finding[]> {
  const apps = makeTrellisApiClient(input.kc, AppsV1Api, 'check');
  const core = makeTrellisApiClient(input.kc, CoreV1Api, 'check');
  const findings: Finding[] = [];
  const ns = input.systemNamespace;
  try {
    const control = await apps.readNamespacedDeployment({ namespace: ns, name: 'trellis-control' });
    const ready = control.status?.readyReplicas ?? 0;
    findings.push(ready > 0 ? ok('control plane ready', `deployment ${ns}/trellis-control: ${ready}/${control.spec?.replicas ?? 1} ready`) : fail('control plane ready', `deployment ${ns}/trellis-control has no ready replica`, `kubectl -n ${ns} describe deploy/trellis-control; kubectl -n ${ns} logs deploy/trellis-control`));
  } catch (err) {
    findings.push(fail('control plane ready', `cannot read deployment ${ns}/trellis-control (${apiError(err)})`, 'install the zone: kubectl apply -k deploy/kubernetes/overlays/zone'));
  }
  let meshMode: CaptureMode = 'init';
  try {
    const injector = await apps.readNamespacedDeployment({ namespace: ns, name: 'trellis-injector' });
    meshMode = injectorCaptureMode(injector.spec?.template.spec?.containers[0]?.args ?? []);
    const ready = injector.status?.readyReplicas ?? 0;
    findings.push(ready > 0 ? ok('injector ready', `${ready} ready, mesh-wide capture mode ${meshMode}`) : fail('injector ready', 'no ready replica: pods in meshed namespaces cannot be created (failurePolicy Fail)', `kubectl -n ${ns} logs deploy/trellis-injector`));
  } catch (err) {
    findings.push(fail('injector ready', `cannot read deployment ${ns}/trellis-injector (${apiError(err)})`, 'install the zone: kubectl apply -k deploy/kubernetes/overlays/zone'));
  }
  findings.push(...(await webhookFindings(input, makeTrellisApiClient(input.kc, AdmissionregistrationV1Api, 'check'))));
  let cniReady = false;
  try {
    // Its own namespace: hostPath needs Pod Security `privileged`, which trellis-system does not grant.
    const ds = await apps.readNamespacedDaemonSet({ namespace: 'trellis-cni', name: 'trellis-cni' });
    const want = ds.status?.desiredNumberScheduled ?? 0;
    const have = ds.status?.numberReady ?? 0;
    cniReady = want > 0 && have === want;
    findings.push(cniReady ? ok('CNI node agent', `${have}/${want} nodes ready`) : warn('CNI node agent', `${have}/${want} nodes ready`, 'kubectl -n trellis-cni rollout status ds/trellis-cni; kubectl -n trellis-cni logs ds/trellis-cni'));
  } catch {
    // Absent is fine when nothing uses CNI capture; namespaceFindings says so where it matters.
  }
  try {
    findings.push(...(await namespaceFindings(core, meshMode, cniReady)));
  } catch (err) {
    findings.push(fail('meshed namespaces', `cannot list namespaces (${apiError(err)})`, 'run with a kubeconfig that may list namespaces'));
  }
  return findings;
}
