/**
 * What one Kubernetes Service is, as a caller's sidecar must see it: its ports (the Service port, the
 * pod port it lands on, and how its traffic is carried), its cluster IPs, and one endpoint per pod of
 * the mesh that backs it. Pure: the same objects always give the same answer, so it is tested without
 * any API server.
 *
 * - Healthy is the EndpointSlice's `ready` condition (absent means ready, as the API documents); a pod
 *   listed in two slices (dual-stack) is one endpoint, ready if either says so.
 * - The address is the pod's primary IP; the port is the sidecar's tunnel port, read from the pod.
 *   Pods without the sidecar, and slice entries that are not pods, are skipped and counted: nothing
 *   can reach them through the mesh.
 * - A pod whose service account is not the Service's name is skipped and counted too: a workload's
 *   mesh identity is its service account, and its sidecar refuses (421) streams addressed to any other
 *   service, so listing it would only make calls fail. One service account per Service is the rule.
 * - The zone is the control plane's, i.e. the mesh zone (a cluster). The EndpointSlice's own `zone`
 *   is a cloud availability zone inside that cluster: using it would put a mesh zone that no zone
 *   ingress serves into every SNI (`api/sni.ts`), and callers would treat their own cluster as remote.
 *   It becomes the endpoint's subzone instead (`trellis.dev/subzone`, `withSubzone`), unless the pod
 *   carries that label itself.
 * - Ports per pod: each EndpointSlice lists the pod ports its endpoints serve, by Service port name, and
 *   a Service's named targetPort may resolve to a different port on each pod (the slice controller puts
 *   pods that resolve alike into one slice). So each pod's registration lists, per Service port name, the
 *   port of the slices it is in; the registry turns that into the endpoint's own target ports, and a pod
 *   whose slices lack a port does not serve it. The definition's `targetPort` is the first slice's.
 * - Protocol: `appProtocol` when set (`http` is HTTP/1.1, `kubernetes.io/h2c` HTTP/2, `grpc` gRPC; anything
 *   else is TCP); otherwise the port name (`http-*`, `http2-*`, `grpc-*`, api/port-protocol.ts), as the
 *   injector reads container ports; the pod's
 *   `trellis.dev/port-protocols` annotation overrides the name for the port it names.
 */
import { isSubzone, SUBZONE_LABEL, type PortProtocol, type ServicePort } from '../../api/data-plane.js';
import { MAX_ENDPOINT_LABELS } from './pod-labels.js';
import { protocolFromAppProtocol, protocolFromPortName } from '../../api/port-protocol.js';
import type { RegisteredPort } from '../../api/control-protocol.js';
import type { ServiceDefinition } from '../registry.js';
import type { StoredRegistration } from '../store.js';
import type { PodView, ServicePortView, ServiceView, SliceView } from './kubernetes-objects.js';

export interface DesiredService {
  readonly definition: ServiceDefinition;
  /** instanceId → registration, healthy as the slices say. */
  readonly instances: ReadonlyMap<string, StoredRegistration>;
  /** Slice entries skipped: not a pod, or a pod without the sidecar. */
  readonly outsideMesh: number;
  /** Mesh pods skipped because their service account is not the Service's name. */
  readonly otherIdentity: readonly string[];
}

/**
 * The pod's labels with its subzone (api/data-plane.ts SUBZONE_LABEL): the pod's own `trellis.dev/subzone`
 * label wins; else the EndpointSlice's `zone` for it (its node's `topology.kubernetes.io/zone`), when it
 * is a label value. The registration limit of 16 labels holds: the subzone replaces the last one.
 */
export function withSubzone(labels: Readonly<Record<string, string>> | undefined, sliceZone: string | undefined): Readonly<Record<string, string>> | undefined {
  if (labels?.[SUBZONE_LABEL] !== undefined || sliceZone === undefined || !isSubzone(sliceZone)) return labels;
  const kept = Object.entries(labels ?? {}).slice(0, MAX_ENDPOINT_LABELS - 1);
  const out: Record<string, string> = {};
  for (const [k, v] of [...kept, [SUBZONE_LABEL, sliceZone]]) Object.defineProperty(out, k as string, { value: v, enumerable: true });
  return Object.freeze(out);
}

export function protocolFromName(name: string | undefined): PortProtocol {
  return protocolFromPortName(name) ?? 'tcp';
}

/** Instance ids of Kubernetes endpoints contain ":", which agent-chosen ids never do. */
export function instanceIdOf(service: string, pod: PodView): string {
  return `k8s:${service}:${pod.uid === '' ? pod.name : pod.uid}`;
}

function resolvedTarget(port: ServicePortView, slices: readonly SliceView[]): number | undefined {
  for (const slice of slices) {
    const resolved = slice.ports.get(port.name);
    if (resolved !== undefined) return resolved;
  }
  if (typeof port.targetPort === 'number') return port.targetPort;
  if (port.targetPort === undefined) return port.port;
  // A named targetPort resolves per pod; with no slice to say how, the port cannot be reached yet.
  return undefined;
}

export function desiredService(service: ServiceView, allSlices: Iterable<SliceView>, podOf: (namespace: string, name: string) => PodView | undefined, zone: string, now: string): DesiredService {
  const slices = [...allSlices].filter((s) => s.addressType !== 'FQDN').sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let outsideMesh = 0;
  const otherIdentity = new Set<string>();
  const pods = new Map<string, { pod: PodView; ready: boolean; fallbackAddress: string; ports: Map<string, number>; subzone: string | undefined }>();
  for (const slice of slices) {
    for (const endpoint of slice.endpoints) {
      const pod = endpoint.podName === undefined ? undefined : podOf(slice.namespace, endpoint.podName);
      if (pod === undefined || pod.tunnelPort === undefined) {
        outsideMesh++;
        continue;
      }
      if (pod.serviceAccount !== service.name) {
        otherIdentity.add(`${pod.name} (service account ${pod.serviceAccount})`);
        continue;
      }
      let seen = pods.get(pod.name);
      if (seen === undefined) pods.set(pod.name, (seen = { pod, ready: endpoint.ready, fallbackAddress: endpoint.addresses[0] as string, ports: new Map(), subzone: endpoint.zone }));
      else seen.ready ||= endpoint.ready;
      seen.subzone ??= endpoint.zone;
      // Slices in name order: a pod in two (dual-stack) takes a port from the first that names it.
      for (const [name, port] of slice.ports) if (!seen.ports.has(name)) seen.ports.set(name, port);
    }
  }
  const sortedPods = [...pods.values()].sort((a, b) => (a.pod.name < b.pod.name ? -1 : 1));

  const ports: ServicePort[] = [];
  for (const sp of service.ports) {
    const targetPort = resolvedTarget(sp, slices);
    if (targetPort === undefined) continue;
    let protocol: PortProtocol;
    if (sp.appProtocol !== undefined) protocol = protocolFromAppProtocol(sp.appProtocol);
    else protocol = sortedPods.map((p) => p.pod.portProtocols.get(targetPort)).find((p) => p !== undefined) ?? protocolFromName(sp.name);
    ports.push(Object.freeze({ port: sp.port, targetPort, protocol, ...(sp.name === '' ? {} : { name: sp.name }) }));
  }
  ports.sort((a, b) => a.port - b.port);

  const instances = new Map<string, StoredRegistration>();
  for (const { pod, ready, fallbackAddress, ports: podPorts, subzone } of sortedPods) {
    const labels = withSubzone(pod.labels, subzone);
    const instanceId = instanceIdOf(service.name, pod);
    // Named after the Service port (not deduplicated by number: two Service ports may land on one pod port).
    const registeredPorts: RegisteredPort[] = [];
    for (const p of ports) {
      const own = podPorts.get(p.name ?? '');
      if (own !== undefined) registeredPorts.push(Object.freeze({ port: own, protocol: p.protocol, ...(p.name === undefined ? {} : { name: p.name }) }));
    }
    instances.set(
      instanceId,
      Object.freeze({
        instanceId,
        service: service.name,
        namespace: service.namespace,
        zone,
        address: pod.ips[0] ?? fallbackAddress,
        tunnelPort: pod.tunnelPort as number,
        ports: Object.freeze(registeredPorts),
        upstreams: Object.freeze([]),
        healthy: ready,
        updatedAt: now,
        ...(labels === undefined ? {} : { labels }),
      }),
    );
  }
  return { definition: Object.freeze({ ports: Object.freeze(ports), virtualIps: service.clusterIps }), instances, outsideMesh, otherIdentity: [...otherIdentity].sort() };
}
