/**
 * Whether a pod gets the sidecar: injected, left alone (with a reason that is counted and, when a user
 * would want to know, reported as an Event), or refused.
 *
 * The namespace's `trellis.dev/injection=enabled` label is not in the AdmissionReview. The API server
 * evaluates the webhook's namespaceSelector against the live namespace at admission time, so the handler
 * trusts it: a request that arrives on the `/inject` path came through that selector. Pods that opt in
 * individually arrive on `/inject/opt-in`, through a second webhook whose objectSelector matches the
 * pod label `trellis.dev/inject=true` in namespaces without the label. An informer would need list/watch
 * on namespaces and could lag a namespace labelled a moment ago; the selector cannot.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_STATUS, KEY_INJECT } from './annotations.js';
import type { InjectorConfig } from './config.js';

/** How the request reached us: which of the two webhooks in the configuration matched the pod. */
export type SelectionRoute = 'namespace' | 'opt-in';

export type SkipReason = 'system-namespace' | 'opted-out' | 'not-opted-in' | 'host-network' | 'other-mesh' | 'windows';

export type Selection =
  | { readonly action: 'inject' }
  | { readonly action: 'already-injected' }
  | { readonly action: 'skip'; readonly reason: SkipReason; readonly message: string; readonly report: boolean }
  | { readonly action: 'refuse'; readonly message: string };

/** Container names and annotations of other meshes' sidecars (Istio, Linkerd, Kuma, Consul). */
const OTHER_MESH_CONTAINERS: ReadonlySet<string> = new Set(['istio-proxy', 'istio-init', 'linkerd-proxy', 'linkerd-init', 'kuma-sidecar', 'kuma-init', 'consul-dataplane', 'envoy-sidecar']);
const OTHER_MESH_ANNOTATIONS: readonly string[] = ['sidecar.istio.io/status', 'linkerd.io/proxy-version', 'kuma.io/sidecar-injected', 'consul.hashicorp.com/connect-inject-status'];

export const SIDECAR_CONTAINER = 'trellis-proxy';
export const INIT_CONTAINER = 'trellis-init';

function flag(pod: V1Pod, key: string): string | undefined {
  return pod.metadata?.labels?.[key] ?? pod.metadata?.annotations?.[key];
}

function allContainers(pod: V1Pod): V1Container[] {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
}

function otherMesh(pod: V1Pod): string | undefined {
  const container = allContainers(pod).find((c) => OTHER_MESH_CONTAINERS.has(c.name));
  if (container !== undefined) return `container "${container.name}"`;
  const annotations = pod.metadata?.annotations ?? {};
  const annotation = OTHER_MESH_ANNOTATIONS.find((key) => annotations[key] !== undefined && annotations[key] !== 'false');
  return annotation === undefined ? undefined : `annotation "${annotation}"`;
}

/** App containers (and the pod default) whose uid equals the proxy's: their traffic would bypass capture. */
function containersRunningAsProxy(pod: V1Pod, proxyUid: number): string[] {
  const podUid = pod.spec?.securityContext?.runAsUser;
  return allContainers(pod)
    .filter((c) => (c.securityContext?.runAsUser ?? podUid) === proxyUid)
    .map((c) => c.name);
}

export function selectPod(pod: V1Pod, namespace: string, route: SelectionRoute, config: InjectorConfig): Selection {
  if (config.excludedNamespaces.has(namespace)) {
    return { action: 'skip', reason: 'system-namespace', message: `namespace "${namespace}" is never injected`, report: false };
  }
  if (pod.metadata?.annotations?.[ANNOTATION_STATUS] !== undefined || allContainers(pod).some((c) => c.name === SIDECAR_CONTAINER)) {
    return { action: 'already-injected' };
  }
  const inject = flag(pod, KEY_INJECT);
  if (inject === 'false') return { action: 'skip', reason: 'opted-out', message: `the pod sets ${KEY_INJECT}: "false"`, report: false };
  if (route === 'opt-in' && inject !== 'true') {
    return { action: 'skip', reason: 'not-opted-in', message: `the namespace is not labelled and the pod does not set ${KEY_INJECT}: "true"`, report: false };
  }
  if (pod.spec?.hostNetwork === true) {
    return { action: 'skip', reason: 'host-network', message: 'the pod uses the host network; capturing its traffic would capture the node\'s', report: true };
  }
  const mesh = otherMesh(pod);
  if (mesh !== undefined) return { action: 'skip', reason: 'other-mesh', message: `the pod already carries another mesh's sidecar (${mesh})`, report: true };
  if (pod.spec?.os?.name === 'windows') return { action: 'skip', reason: 'windows', message: 'Windows pods have no iptables capture', report: true };
  const asProxy = containersRunningAsProxy(pod, config.proxyUid);
  if (asProxy.length > 0) {
    return {
      action: 'refuse',
      message: `containers ${asProxy.map((n) => `"${n}"`).join(', ')} run as uid ${config.proxyUid}, the mesh proxy's uid: their traffic would bypass the sidecar. Run them as another user, or set ${KEY_INJECT}: "false" on the pod`,
    };
  }
  return { action: 'inject' };
}
