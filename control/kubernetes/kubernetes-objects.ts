/**
 * The few fields the registry feed reads of Services, EndpointSlices and Pods, read defensively from
 * the API's JSON (list items through the typed client, watch events raw; both have the same field
 * names). An object that lacks what a field must be is dropped (undefined), never half-read.
 *
 * Pods are reduced hardest: only whether the Trellis sidecar is in them and where its tunnel listens,
 * their IPs, service account and port-protocol overrides are kept.
 */
import type { PortProtocol } from '../../api/data-plane.js';
import { endpointLabelsOfPod } from './pod-labels.js';

/** The sidecar's tunnel port as the injector declares it (`injector/sidecar.ts`). */
export const SIDECAR_TUNNEL_PORT_NAME = 'trellis-tunnel';
/** "8080=http,9000=tcp": a port's protocol over what its name says (`injector/annotations.ts`). */
export const ANNOTATION_PORT_PROTOCOLS = 'trellis.dev/port-protocols';
/** The EndpointSlice label naming the Service a slice belongs to. */
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';

export interface ServicePortView {
  readonly name: string;
  readonly port: number;
  /** A number, a container port name, or undefined (the same as `port`). */
  readonly targetPort: number | string | undefined;
  readonly appProtocol: string | undefined;
}

export interface ServiceView {
  readonly namespace: string;
  readonly name: string;
  readonly externalName: boolean;
  readonly clusterIps: readonly string[];
  /** TCP ports only: UDP and SCTP are not carried by the mesh. */
  readonly ports: readonly ServicePortView[];
  /** The Service's `trellis.dev/export` label or annotation. */
  readonly export: ExportWord;
}

/** `trellis.dev/export`: on a Service (label or annotation) or a Namespace (label), `"true"` or `"false"`. */
export const EXPORT_LABEL = 'trellis.dev/export';

/**
 * A `trellis.dev/export` word: true, false, absent, or `'invalid'` (any other value, or a label and an
 * annotation that disagree): the feed then does not export the service and says why, since a typo must
 * not publish a service to every zone.
 */
export type ExportWord = boolean | undefined | 'invalid';

export interface NamespaceView {
  readonly name: string;
  readonly export: ExportWord;
}

function exportWord(...values: unknown[]): ExportWord {
  const given = values.filter((v) => v !== undefined);
  if (given.some((v) => v !== 'true' && v !== 'false')) return 'invalid';
  if (given.includes('true') && given.includes('false')) return 'invalid';
  return given.length === 0 ? undefined : given[0] === 'true';
}

export function namespaceView(raw: unknown): NamespaceView | undefined {
  const m = obj(obj(raw)?.metadata);
  const name = str(m?.name);
  if (m === undefined || name === undefined) return undefined;
  return Object.freeze({ name, export: exportWord(obj(m.labels)?.[EXPORT_LABEL]) });
}

export interface SliceEndpointView {
  readonly addresses: readonly string[];
  /** `conditions.ready`; absent means ready (the API's documented default). */
  readonly ready: boolean;
  readonly podName: string | undefined;
  /** The slice's `zone` of it: its node's `topology.kubernetes.io/zone`, Trellis's subzone inside the cluster's zone. */
  readonly zone: string | undefined;
}

export interface SliceView {
  readonly namespace: string;
  readonly name: string;
  readonly service: string;
  readonly addressType: string;
  /** Port name (the Service port's name, "" when unnamed) → the pod port it resolves to. */
  readonly ports: ReadonlyMap<string, number>;
  readonly endpoints: readonly SliceEndpointView[];
}

export interface PodView {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly ips: readonly string[];
  readonly serviceAccount: string;
  /** undefined: the pod has no Trellis sidecar, so nothing can reach it through the mesh. */
  readonly tunnelPort: number | undefined;
  readonly portProtocols: ReadonlyMap<number, PortProtocol>;
  /** Its labels as endpoint labels (pod-labels.ts); undefined: none that select anything. */
  readonly labels: Readonly<Record<string, string>> | undefined;
}

type Json = Record<string, unknown>;

function obj(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

function meta(raw: unknown): { namespace: string; name: string; uid: string; labels: Json; annotations: Json } | undefined {
  const m = obj(obj(raw)?.metadata);
  const namespace = str(m?.namespace);
  const name = str(m?.name);
  if (m === undefined || namespace === undefined || name === undefined) return undefined;
  return { namespace, name, uid: str(m.uid) ?? '', labels: obj(m.labels) ?? {}, annotations: obj(m.annotations) ?? {} };
}

export function serviceView(raw: unknown): ServiceView | undefined {
  const m = meta(raw);
  const spec = obj(obj(raw)?.spec);
  if (m === undefined || spec === undefined) return undefined;
  const ips = new Set<string>();
  for (const ip of [spec.clusterIP, ...list(spec.clusterIPs)]) {
    if (typeof ip === 'string' && ip !== '' && ip !== 'None') ips.add(ip);
  }
  const ports: ServicePortView[] = [];
  for (const p of list(spec.ports)) {
    const port = obj(p);
    if (port === undefined || !isPort(port.port) || (str(port.protocol) ?? 'TCP') !== 'TCP') continue;
    const target = port.targetPort;
    ports.push(
      Object.freeze({
        name: str(port.name) ?? '',
        port: port.port,
        targetPort: isPort(target) ? target : typeof target === 'string' && target !== '' ? (/^\d+$/.test(target) ? Number(target) : target) : undefined,
        appProtocol: str(port.appProtocol),
      }),
    );
  }
  const exported = exportWord(m.labels[EXPORT_LABEL], m.annotations[EXPORT_LABEL]);
  return Object.freeze({ namespace: m.namespace, name: m.name, externalName: spec.type === 'ExternalName', clusterIps: Object.freeze([...ips]), ports: Object.freeze(ports), export: exported });
}

export function sliceView(raw: unknown): SliceView | undefined {
  const m = meta(raw);
  const body = obj(raw);
  const service = str(m?.labels[LABEL_SERVICE_NAME]);
  if (m === undefined || body === undefined || service === undefined) return undefined;
  const ports = new Map<string, number>();
  for (const p of list(body.ports)) {
    const port = obj(p);
    if (port === undefined || !isPort(port.port) || (str(port.protocol) ?? 'TCP') !== 'TCP') continue;
    ports.set(str(port.name) ?? '', port.port);
  }
  const endpoints: SliceEndpointView[] = [];
  for (const e of list(body.endpoints)) {
    const endpoint = obj(e);
    const addresses = list(endpoint?.addresses).filter((a): a is string => typeof a === 'string');
    if (endpoint === undefined || addresses.length === 0) continue;
    const ref = obj(endpoint.targetRef);
    endpoints.push(
      Object.freeze({
        addresses: Object.freeze(addresses),
        ready: obj(endpoint.conditions)?.ready !== false,
        podName: ref !== undefined && ref.kind === 'Pod' ? str(ref.name) : undefined,
        zone: str(endpoint.zone),
      }),
    );
  }
  return Object.freeze({ namespace: m.namespace, name: m.name, service, addressType: str(body.addressType) ?? 'IPv4', ports, endpoints: Object.freeze(endpoints) });
}

function sidecarTunnelPort(spec: Json): number | undefined {
  // Native sidecars are init containers; the classic layout makes the sidecar the first container.
  for (const c of [...list(spec.initContainers), ...list(spec.containers)]) {
    for (const p of list(obj(c)?.ports)) {
      const port = obj(p);
      if (port !== undefined && port.name === SIDECAR_TUNNEL_PORT_NAME && isPort(port.containerPort)) return port.containerPort;
    }
  }
  return undefined;
}

/** The injector's annotation, read leniently: the injector already refused a pod with a malformed one. */
export function parsePortProtocols(text: string | undefined): ReadonlyMap<number, PortProtocol> {
  const out = new Map<number, PortProtocol>();
  for (const item of (text ?? '').split(',')) {
    const match = /^\s*(\d{1,5})\s*=\s*(http2|http|grpc|tcp)\s*$/.exec(item);
    if (match !== null && isPort(Number(match[1]))) out.set(Number(match[1]), match[2] as PortProtocol);
  }
  return out;
}

export function podView(raw: unknown): PodView | undefined {
  const m = meta(raw);
  const spec = obj(obj(raw)?.spec);
  const status = obj(obj(raw)?.status);
  if (m === undefined || spec === undefined) return undefined;
  const ips: string[] = [];
  const primary = str(status?.podIP);
  if (primary !== undefined && primary !== '') ips.push(primary);
  for (const entry of list(status?.podIPs)) {
    const ip = str(obj(entry)?.ip);
    if (ip !== undefined && ip !== '' && !ips.includes(ip)) ips.push(ip);
  }
  const tunnelPort = sidecarTunnelPort(spec);
  return Object.freeze({
    namespace: m.namespace,
    name: m.name,
    uid: m.uid,
    ips: Object.freeze(ips),
    serviceAccount: str(spec.serviceAccountName) ?? str(spec.serviceAccount) ?? 'default',
    tunnelPort,
    portProtocols: parsePortProtocols(str(m.annotations[ANNOTATION_PORT_PROTOCOLS])),
    labels: endpointLabelsOfPod(m.labels),
  });
}
