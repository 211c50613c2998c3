/**
 * What the gateway's Kubernetes mode reads, each listed with the typed client and watched cluster-wide
 * (routes may come from any namespace a listener allows): the Gateway API kinds (standard channel:
 * GatewayClass, Gateway, HTTPRoute, GRPCRoute v1, ReferenceGrant v1beta1), Services (a backendRef must
 * name one with that port) and Namespaces (their labels, for `allowedRoutes.namespaces.from: Selector`).
 * Secrets are not read cluster-wide: only in the namespaces the Gateway's certificateRefs name (its own
 * at least), and only `kubernetes.io/tls` ones (field selector), so the gateway's Secret access is a
 * namespaced Role per such namespace, never a ClusterRole.
 *
 * Objects are cut down before they are kept: Gateway API objects lose managedFields and annotations, a
 * Secret keeps only its certificate and key, a Service its ports, a Namespace its labels. The RBAC in
 * deploy/kubernetes/gateway grants get/list/watch on exactly these.
 */
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { makeTrellisApiClient } from '../../common/kubernetes-client.js';
import type { ListPage, ResourceSource } from '../../common/kubernetes-reflector.js';
import { GATEWAY_API_GROUP, isObj, type Obj } from '../gateway-api.js';

export const GATEWAY_API_KINDS = Object.freeze({
  gatewayclasses: { version: 'v1', kind: 'GatewayClass' },
  gateways: { version: 'v1', kind: 'Gateway' },
  httproutes: { version: 'v1', kind: 'HTTPRoute' },
  grpcroutes: { version: 'v1', kind: 'GRPCRoute' },
  referencegrants: { version: 'v1beta1', kind: 'ReferenceGrant' },
} as const);

export type GatewayApiPlural = keyof typeof GATEWAY_API_KINDS;
export type WatchedResource = GatewayApiPlural | 'secrets' | 'services' | 'namespaces';
export type ClusterResource = Exclude<WatchedResource, 'secrets'>;

interface RawList {
  readonly items?: readonly unknown[];
  readonly metadata?: { readonly resourceVersion?: string; readonly _continue?: string; readonly continue?: string };
}

function page(list: RawList): ListPage {
  return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '', continueToken: list.metadata?._continue ?? list.metadata?.continue };
}

/** Only TLS Secrets: the gateway never holds the cluster's other secrets in memory. */
export const TLS_SECRETS_SELECTOR = 'type=kubernetes.io/tls';

export function gatewayApiSource(kc: KubeConfig, plural: GatewayApiPlural): ResourceSource {
  const api = makeTrellisApiClient(kc, CustomObjectsApi, 'gateway');
  const { version } = GATEWAY_API_KINDS[plural];
  return {
    resource: plural,
    watchPath: `/apis/${GATEWAY_API_GROUP}/${version}/${plural}`,
    list: async (limit, continueToken) => page((await api.listClusterCustomObject({ group: GATEWAY_API_GROUP, version, plural, limit, _continue: continueToken })) as RawList),
  };
}

/** The TLS Secrets of one namespace. */
export function secretSource(kc: KubeConfig, namespace: string): ResourceSource {
  const api = makeTrellisApiClient(kc, CoreV1Api, 'gateway');
  return {
    resource: `secrets/${namespace}`,
    watchPath: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
    watchQuery: { fieldSelector: TLS_SECRETS_SELECTOR },
    list: async (limit, continueToken) => page(await api.listNamespacedSecret({ namespace, limit, _continue: continueToken, fieldSelector: TLS_SECRETS_SELECTOR })),
  };
}

export function coreSource(kc: KubeConfig, resource: 'services' | 'namespaces'): ResourceSource {
  const api = makeTrellisApiClient(kc, CoreV1Api, 'gateway');
  if (resource === 'services') {
    return { resource, watchPath: '/api/v1/services', list: async (limit, continueToken) => page(await api.listServiceForAllNamespaces({ limit, _continue: continueToken })) };
  }
  return { resource, watchPath: '/api/v1/namespaces', list: async (limit, continueToken) => page(await api.listNamespace({ limit, _continue: continueToken })) };
}

const keepMeta = (m: unknown, extra: readonly string[] = []): Obj => {
  const o = isObj(m) ? m : {};
  return Object.fromEntries(['name', 'namespace', 'generation', 'resourceVersion', 'creationTimestamp', 'uid', ...extra].filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
};

/** The fields of each kind the gateway reads; undefined drops an object (malformed or of no interest). */
export function projectObject(resource: WatchedResource, raw: unknown): Obj | undefined {
  if (!isObj(raw) || !isObj(raw.metadata)) return undefined;
  if (resource === 'secrets') {
    // The typed client decodes nothing: `data` values stay base64, as the API sends them.
    const data = isObj(raw.data) ? raw.data : {};
    return { metadata: keepMeta(raw.metadata), type: raw.type, data: { 'tls.crt': data['tls.crt'], 'tls.key': data['tls.key'] } };
  }
  if (resource === 'services') return { metadata: keepMeta(raw.metadata), spec: { ports: isObj(raw.spec) ? raw.spec.ports : [] } };
  if (resource === 'namespaces') return { metadata: keepMeta(raw.metadata, ['labels']) };
  const { kind } = GATEWAY_API_KINDS[resource];
  return { apiVersion: raw.apiVersion ?? `${GATEWAY_API_GROUP}/${GATEWAY_API_KINDS[resource].version}`, kind: raw.kind ?? kind, metadata: keepMeta(raw.metadata), spec: raw.spec, status: raw.status };
}
