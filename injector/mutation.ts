/**
 * From a pod to the JSON Patch that injects it. Pure: no I/O, the same pod and config always give the
 * same patch, so the handler can run it inside the webhook's timeout and tests can apply its output.
 *
 * Order of operations matters. Probe replacements address app containers by their index in the pod as
 * submitted, so they come before anything is inserted into `containers` or `initContainers`.
 * The init container comes first in `initContainers`, then (native layout) the sidecar, so the capture is
 * installed before anything runs and the proxy is up before the app's own init containers make calls.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_STATUS, parsePodInjectionOptions } from './annotations.js';
import { appPorts } from './app-ports.js';
import { supportsNativeSidecars, type InjectorConfig } from './config.js';
import { pointer, type JsonPatchOperation } from './json-patch.js';
import { rewriteProbes } from './probes.js';
import { selectPod, INIT_CONTAINER, SIDECAR_CONTAINER, type Selection, type SelectionRoute } from './selection.js';
import { ANNOTATION_APP_PROBES, ANNOTATION_CA_BUNDLE, initContainer, injectedVolumes, redirectAnnotation, sidecarContainer, VOLUME_DATA, VOLUME_IDENTITY, VOLUME_NO_API_TOKEN, type SidecarLayout, type SidecarPlan } from './sidecar.js';
import { ANNOTATION_CAPTURE, ANNOTATION_REDIRECT, type CaptureMode } from '../common/mesh-annotations.js';
import { isSubzone, SUBZONE_LABEL } from '../api/data-plane.js';
import type { V1Container, V1Volume } from '@kubernetes/client-node';

export const ANNOTATION_DEFAULT_CONTAINER = 'kubectl.kubernetes.io/default-container';

/** Recorded on the pod as JSON under `trellis.dev/status`; its presence makes injection idempotent. */
export interface InjectionStatus {
  readonly version: string;
  readonly layout: SidecarLayout;
  readonly initContainers: readonly string[];
  readonly containers: readonly string[];
  readonly volumes: readonly string[];
  readonly rewrittenProbes: readonly string[];
  readonly appPorts: readonly string[];
  /** Absent in pods injected before capture modes existed (they are `init`). */
  readonly captureMode?: CaptureMode;
}

/** What the patch adds, as objects: the admission handler checks the resulting pod against Pod Security. */
export interface InjectedParts {
  readonly initContainers: readonly V1Container[];
  readonly containers: readonly V1Container[];
  readonly volumes: readonly V1Volume[];
  readonly annotations: Readonly<Record<string, string>>;
}

export type MutationResult =
  | { readonly outcome: 'injected'; readonly patch: readonly JsonPatchOperation[]; readonly status: InjectionStatus; readonly warnings: readonly string[]; readonly parts: InjectedParts }
  | { readonly outcome: 'unchanged'; readonly selection: Exclude<Selection, { action: 'inject' } | { action: 'refuse' }> }
  | { readonly outcome: 'refused'; readonly message: string };

function chooseLayout(config: InjectorConfig, requested: 'auto' | 'classic' | 'native', warnings: string[]): SidecarLayout {
  const native = supportsNativeSidecars(config.kubernetesVersion);
  if (requested === 'classic') return 'classic';
  if (requested === 'native' && !native) {
    warnings.push(`trellis.dev/sidecar-mode "native" needs Kubernetes 1.29 or later; this cluster runs ${config.kubernetesVersion.major}.${config.kubernetesVersion.minor}, so the classic layout is used`);
  }
  return native ? 'native' : 'classic';
}

function isJobPod(pod: V1Pod): boolean {
  return (pod.metadata?.ownerReferences ?? []).some((o) => o.kind === 'Job' && o.apiVersion.startsWith('batch/'));
}

function nameCollisions(pod: V1Pod): string[] {
  const problems: string[] = [];
  const containerNames = new Set([...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name));
  if (containerNames.has(INIT_CONTAINER)) problems.push(`a container is already named "${INIT_CONTAINER}"`);
  for (const volume of pod.spec?.volumes ?? []) {
    if (volume.name === VOLUME_DATA || volume.name === VOLUME_IDENTITY || volume.name === VOLUME_NO_API_TOKEN) problems.push(`a volume is already named "${volume.name}"`);
  }
  return problems;
}

/** The pod as the API server will hold it after the patch (for checks; the patch is what is sent). */
export function injectedPod(pod: V1Pod, parts: InjectedParts): V1Pod {
  return {
    ...pod,
    metadata: { ...(pod.metadata ?? {}), annotations: { ...(pod.metadata?.annotations ?? {}), ...parts.annotations } },
    spec: {
      ...(pod.spec ?? { containers: [] }),
      initContainers: [...parts.initContainers, ...(pod.spec?.initContainers ?? [])],
      containers: [...parts.containers, ...(pod.spec?.containers ?? [])],
      volumes: [...(pod.spec?.volumes ?? []), ...parts.volumes],
    },
  };
}

export function mutatePod(pod: V1Pod, namespace: string, route: SelectionRoute, config: InjectorConfig, captureMode: CaptureMode = config.captureMode): MutationResult {
  const selection = selectPod(pod, namespace, route, config);
  if (selection.action === 'refuse') return { outcome: 'refused', message: selection.message };
  if (selection.action !== 'inject') return { outcome: 'unchanged', selection };

  const annotations = pod.metadata?.annotations ?? {};
  const parsed = parsePodInjectionOptions(annotations);
  const problems = [...parsed.errors, ...nameCollisions(pod)];
  if (problems.length > 0) return { outcome: 'refused', message: `cannot inject the Trellis sidecar: ${problems.join('; ')}` };
  const options = parsed.options;
  const warnings: string[] = [];
  const layout = chooseLayout(config, options.sidecarMode, warnings);
  const containers = pod.spec?.containers ?? [];
  const appSidecars = (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
  const ports = appPorts([...containers, ...appSidecars], options.portProtocols);
  const probes = options.rewriteProbes ? rewriteProbes(containers, pod.spec?.initContainers ?? [], config.ports.status) : { rewrites: [], appProbes: {}, warnings: [] };
  warnings.push(...probes.warnings);
  const hasAppProbes = probes.rewrites.length > 0;
  // The pod's own subzone label makes its calls prefer endpoints of that subzone (the agent's --subzone).
  const subzone = pod.metadata?.labels?.[SUBZONE_LABEL];
  const plan: SidecarPlan = { layout, appPorts: ports, options, hasAppProbes, captureMode, ...(subzone !== undefined && isSubzone(subzone) ? { subzone } : {}) };
  if (layout === 'classic' && isJobPod(pod)) {
    warnings.push(
      `this Job's pod gets the classic sidecar layout (Kubernetes ${config.kubernetesVersion.major}.${config.kubernetesVersion.minor}); the sidecar exits when the app calls POST http://127.0.0.1:${config.ports.status}/quitquitquit, or use Kubernetes 1.29+ where it ends with the Job`,
    );
  }

  const sidecar = sidecarContainer(config, plan);
  // Under CNI capture the plugin installs the rules: no privileged init container.
  const inits = captureMode === 'init' ? [initContainer(config, options)] : [];
  const volumes = injectedVolumes(config, plan);
  const status: InjectionStatus = {
    version: config.version,
    layout,
    captureMode,
    initContainers: [...(captureMode === 'init' ? [INIT_CONTAINER] : []), ...(layout === 'native' ? [SIDECAR_CONTAINER] : [])],
    containers: layout === 'classic' ? [SIDECAR_CONTAINER] : [],
    volumes: volumes.map((v) => v.name),
    rewrittenProbes: Object.keys(probes.appProbes),
    appPorts: ports.map((p) => `${p.port}/${p.protocol}`),
  };

  const patch: JsonPatchOperation[] = [];
  for (const rewrite of probes.rewrites) patch.push({ op: 'replace', path: pointer('spec', rewrite.list, rewrite.containerIndex, rewrite.field), value: rewrite.probe });

  const newAnnotations: Record<string, string> = { [ANNOTATION_STATUS]: JSON.stringify(status), [ANNOTATION_CA_BUNDLE]: config.trustBundlePem, [ANNOTATION_CAPTURE]: captureMode };
  if (captureMode === 'cni') newAnnotations[ANNOTATION_REDIRECT] = redirectAnnotation(config, options);
  if (hasAppProbes) newAnnotations[ANNOTATION_APP_PROBES] = JSON.stringify(probes.appProbes);
  const firstApp = containers[0];
  if (layout === 'classic' && annotations[ANNOTATION_DEFAULT_CONTAINER] === undefined && firstApp !== undefined) {
    // `kubectl logs/exec` would otherwise pick the sidecar, now the first container.
    newAnnotations[ANNOTATION_DEFAULT_CONTAINER] = firstApp.name;
  }
  if (pod.metadata?.annotations == null) {
    if (pod.metadata == null) patch.push({ op: 'add', path: '/metadata', value: {} });
    patch.push({ op: 'add', path: pointer('metadata', 'annotations'), value: newAnnotations });
  } else {
    for (const [key, value] of Object.entries(newAnnotations)) patch.push({ op: 'add', path: pointer('metadata', 'annotations', key), value });
  }

  const injectedInits = layout === 'native' ? [...inits, sidecar] : inits;
  if (injectedInits.length === 0) {
    // CNI capture with the classic layout: nothing goes before the app's init containers.
  } else if (pod.spec?.initContainers == null || pod.spec.initContainers.length === 0) {
    patch.push({ op: 'add', path: pointer('spec', 'initContainers'), value: injectedInits });
  } else {
    injectedInits.forEach((container, index) => patch.push({ op: 'add', path: pointer('spec', 'initContainers', index), value: container }));
  }
  if (layout === 'classic') patch.push({ op: 'add', path: pointer('spec', 'containers', 0), value: sidecar });

  if (pod.spec?.volumes == null) {
    patch.push({ op: 'add', path: pointer('spec', 'volumes'), value: volumes });
  } else {
    for (const volume of volumes) patch.push({ op: 'add', path: '/spec/volumes/-', value: volume });
  }
  const parts: InjectedParts = { initContainers: injectedInits, containers: layout === 'classic' ? [sidecar] : [], volumes, annotations: newAnnotations };
  return { outcome: 'injected', patch, status, warnings, parts };
}
