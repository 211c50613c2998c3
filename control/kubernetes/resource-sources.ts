/**
 * The kinds of object the Kubernetes mode reads (core ones, TrafficPermission and the traffic kinds), each listed through the typed client of
 * `@kubernetes/client-node` and watched at its cluster-wide collection path. The RBAC in `deploy/`
 * must grant list and watch on exactly these.
 */
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { ListPage, ResourceSource } from '../../common/kubernetes-reflector.js';
import { makeTrellisApiClient } from '../../common/kubernetes-client.js';

export const TRAFFIC_PERMISSION_GROUP = 'trellis.dev';
export const TRAFFIC_PERMISSION_VERSION = 'v1alpha1';
export const TRAFFIC_PERMISSION_PLURAL = 'trafficpermissions';

interface TypedList {
  readonly items?: readonly unknown[];
  readonly metadata?: { readonly resourceVersion?: string; readonly _continue?: string; readonly continue?: string };
}

function page(list: TypedList): ListPage {
  return {
    items: list.items ?? [],
    resourceVersion: list.metadata?.resourceVersion ?? '',
    // Typed lists name it `_continue`; custom objects come back as raw JSON with `continue`.
    continueToken: list.metadata?._continue ?? list.metadata?.continue,
  };
}

export function serviceSource(kc: KubeConfig): ResourceSource {
  const api = makeTrellisApiClient(kc, CoreV1Api, 'control');
  return {
    resource: 'services',
    watchPath: '/api/v1/services',
    list: async (limit, continueToken) => page(await api.listServiceForAllNamespaces({ limit, _continue: continueToken })),
  };
}

export function endpointSliceSource(kc: KubeConfig): ResourceSource {
  const api = makeTrellisApiClient(kc, DiscoveryV1Api, 'control');
  return {
    resource: 'endpointslices',
    watchPath: '/apis/discovery.k8s.io/v1/endpointslices',
    list: async (limit, continueToken) => page(await api.listEndpointSliceForAllNamespaces({ limit, _continue: continueToken })),
  };
}

/** Namespaces, for their `trellis.dev/export` label (cluster-scoped: the collection is the list). */
export function namespaceSource(kc: KubeConfig): ResourceSource {
  const api = makeTrellisApiClient(kc, CoreV1Api, 'control');
  return {
    resource: 'namespaces',
    watchPath: '/api/v1/namespaces',
    list: async (limit, continueToken) => page(await api.listNamespace({ limit, _continue: continueToken })),
  };
}

export function podSource(kc: KubeConfig): ResourceSource {
  const api = makeTrellisApiClient(kc, CoreV1Api, 'control');
  return {
    resource: 'pods',
    watchPath: '/api/v1/pods',
    list: async (limit, continueToken) => page(await api.listPodForAllNamespaces({ limit, _continue: continueToken })),
  };
}

export function trafficPermissionSource(kc: KubeConfig): ResourceSource {
  return trellisResourceSource(kc, TRAFFIC_PERMISSION_PLURAL);
}

/** The traffic-management kinds (policy/traffic/), by the plural of their CRD in deploy/kubernetes/base/crds/. */
export const TRAFFIC_KIND_PLURALS = Object.freeze({
  TrafficRoute: 'trafficroutes',
  RetryPolicy: 'retrypolicies',
  TimeoutPolicy: 'timeoutpolicies',
  OutlierDetection: 'outlierdetections',
  CircuitBreaker: 'circuitbreakers',
  ZoneFailover: 'zonefailovers',
} as const);

/** A namespaced `trellis.dev/v1alpha1` custom resource, listed and watched across namespaces. */
export function trellisResourceSource(kc: KubeConfig, plural: string): ResourceSource {
  const api = makeTrellisApiClient(kc, CustomObjectsApi, 'control');
  return {
    resource: plural,
    watchPath: `/apis/${TRAFFIC_PERMISSION_GROUP}/${TRAFFIC_PERMISSION_VERSION}/${plural}`,
    list: async (limit, continueToken) =>
      page((await api.listClusterCustomObject({ group: TRAFFIC_PERMISSION_GROUP, version: TRAFFIC_PERMISSION_VERSION, plural, limit, _continue: continueToken })) as TypedList),
  };
}
