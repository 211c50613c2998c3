/**
 * What a zone's agents are told about the mesh: the zone's own registry plus the other zones' exported
 * services from the catalogue, each reachable "via the ingress of zone Z". The watch hub reads this view
 * instead of the registry (the same four methods), so remote endpoints reach agents by the same snapshots
 * and deltas, scoped by the same discovery rules.
 *
 * A remote endpoint is one per (zone, ingress address): `{address, tunnelPort}` = the ingress, `ingress`
 * set (the caller dials through it, proxy/outbound/tunnel-client/ingress-transport.ts), `zone` = the
 * owning zone, healthy while that zone reports a healthy endpoint of the service (the ingress itself picks
 * which one), and `trustDomain` = the trust domain of the SPIFFE ID the record says serves it when that is
 * not this zone's (a zone with its own PKI): the caller then verifies both the ingress and the destination
 * against that trust domain's roots alone (federation). The catalogue carries no pods, so a remote zone is as many endpoints as it has ingresses;
 * the caller's balancer prefers its own zone and fails over by zone (locality.ts on the proxy side).
 *
 * Ports come from the service's own definition when the zone has one (instances here), else from the
 * exporting zone's record, with the app port it gave (`targetPort`). A service that exists only in other
 * zones is a mesh service here too (a wildcard subscriber learns it when a zone starts exporting it).
 */
import type { Endpoint, ServicePort, UpstreamService } from '../../api/data-plane.js';
import type { RegistryEvent, ServiceRegistry } from '../registry.js';
import { ownerOf } from './protocol.js';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import type { ExportedService, ZoneIngress } from './records.js';

/** What the watch hub reads of the registry. */
export type DiscoveryRegistry = Pick<ServiceRegistry, 'subscribe' | 'upstream' | 'meshServices' | 'hasMeshService'>;

interface RemoteService {
  readonly ports: readonly ServicePort[];
  readonly endpoints: readonly Endpoint[];
  /** JSON of the above, to tell a change from a repeat. */
  readonly signature: string;
}

export interface CatalogueSource {
  services(): readonly (readonly [string, unknown])[];
  ingresses(): readonly (readonly [string, unknown])[];
}

export class MeshView implements DiscoveryRegistry {
  private remote = new Map<string, RemoteService>();
  private readonly listeners = new Set<(event: RegistryEvent) => void>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly registry: ServiceRegistry,
    private readonly zone: string,
    private readonly catalogue: CatalogueSource,
    /** This zone's workloads' trust domain; records of another set `trustDomain` on their endpoints. */
    private readonly trustDomain?: string,
  ) {
    this.unsubscribe = registry.subscribe((event) => this.emit(event));
    this.remote = this.build();
  }

  subscribe(listener: (event: RegistryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  upstream(namespace: string, service: string): UpstreamService {
    const local = this.registry.upstream(namespace, service);
    const remote = this.remote.get(`${namespace}/${service}`);
    if (remote === undefined) return local;
    if (local.ports.length === 0) return Object.freeze({ ...local, ports: remote.ports, endpoints: remote.endpoints });
    const targetPorts = matchPorts(local.ports, remote.ports);
    // Served here and there: the zone's own ports; a remote endpoint serves those its zone's ports match.
    const endpoints = remote.endpoints.map((e) => Object.freeze({ ...e, targetPorts }));
    return Object.freeze({ ...local, endpoints: Object.freeze([...local.endpoints, ...endpoints]) });
  }

  meshServices(namespace?: string): { readonly namespace: string; readonly service: string }[] {
    const list = this.registry.meshServices(namespace);
    for (const key of this.remote.keys()) {
      const slash = key.indexOf('/');
      const ns = key.slice(0, slash);
      const service = key.slice(slash + 1);
      if ((namespace === undefined || ns === namespace) && !this.registry.hasMeshService(ns, service)) list.push({ namespace: ns, service });
    }
    return list;
  }

  hasMeshService(namespace: string, service: string): boolean {
    return this.registry.hasMeshService(namespace, service) || this.remote.has(`${namespace}/${service}`);
  }

  /** The catalogue changed: recompute, and tell the hub about each service whose remote part changed. */
  catalogueChanged(): void {
    const before = this.remote;
    const after = this.build();
    this.remote = after;
    for (const key of new Set([...before.keys(), ...after.keys()])) {
      const was = before.get(key);
      const is = after.get(key);
      if (was?.signature === is?.signature) continue;
      const slash = key.indexOf('/');
      const namespace = key.slice(0, slash);
      const service = key.slice(slash + 1);
      const local = this.registry.hasMeshService(namespace, service);
      // Joined or left the mesh as this zone sees it; otherwise the whole upstream goes out again.
      if (!local && (was === undefined || is === undefined)) this.emit({ kind: 'service', namespace, service, present: is !== undefined });
      else this.emit({ kind: 'ports', namespace, service });
    }
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
  }

  private emit(event: RegistryEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private foreignTrustDomain(record: ExportedService): string | undefined {
    const td = trustDomainOfRecord(record);
    return td === undefined || this.trustDomain === undefined || td === this.trustDomain ? undefined : td;
  }

  private build(): Map<string, RemoteService> {
    const ingresses = new Map<string, { host: string; port: number }[]>();
    for (const [key, record] of this.catalogue.ingresses()) {
      const zone = ownerOf(key);
      if (zone === this.zone) continue;
      const list = ingresses.get(zone) ?? [];
      for (const address of (record as ZoneIngress).addresses) {
        const colon = address.lastIndexOf(':');
        const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
        if (!list.some((a) => a.host === host && a.port === Number(address.slice(colon + 1)))) list.push({ host, port: Number(address.slice(colon + 1)) });
      }
      ingresses.set(zone, list);
    }
    const byService = new Map<string, { ports: ServicePort[]; endpoints: Endpoint[] }>();
    for (const [, value] of this.catalogue.services()) {
      const record = value as ExportedService;
      if (record.zone === this.zone) continue;
      const via = ingresses.get(record.zone);
      // A zone without an ingress cannot be reached from here: its services are not offered.
      if (via === undefined || via.length === 0) continue;
      const healthy = record.localities.reduce((n, l) => n + l.healthy, 0) > 0;
      const key = `${record.namespace}/${record.name}`;
      let entry = byService.get(key);
      if (entry === undefined) byService.set(key, (entry = { ports: record.ports.map((p) => ({ port: p.port, targetPort: p.targetPort ?? p.port, protocol: p.protocol, ...(p.name === undefined ? {} : { name: p.name }) })), endpoints: [] }));
      const trustDomain = this.foreignTrustDomain(record);
      for (const a of via) entry.endpoints.push({ address: a.host, tunnelPort: a.port, zone: record.zone, healthy, ingress: { address: a.host, port: a.port }, ...(trustDomain === undefined ? {} : { trustDomain }) });
    }
    const out = new Map<string, RemoteService>();
    for (const [key, e] of byService) {
      e.endpoints.sort((x, y) => (x.zone === y.zone ? `${x.address}:${x.tunnelPort}`.localeCompare(`${y.address}:${y.tunnelPort}`) : x.zone.localeCompare(y.zone)));
      out.set(key, { ports: Object.freeze(e.ports), endpoints: Object.freeze(e.endpoints), signature: JSON.stringify(e) });
    }
    return out;
  }
}

/** The trust domain of the identity serving `record` when it is not ours (undefined: ours, or unknown). */
function trustDomainOfRecord(record: ExportedService): string | undefined {
  try {
    return record.identities[0] === undefined ? undefined : parseSpiffeId(record.identities[0]).trustDomain;
  } catch {
    return undefined;
  }
}

/**
 * Which app port of another zone each of this zone's service ports lands on: the remote port of the same
 * number, else of the same name, else the only one when both sides have exactly one (universal-mode
 * services take their port from the app, so the numbers differ between zones). A port with no match is
 * not served by the remote endpoints (`Endpoint.targetPorts` lists only what they serve).
 */
function matchPorts(local: readonly ServicePort[], remote: readonly ServicePort[]): Readonly<Record<number, number>> {
  const map: Record<number, number> = {};
  for (const p of local) {
    const match = remote.find((r) => r.port === p.port) ?? (p.name === undefined ? undefined : remote.find((r) => r.name === p.name)) ?? (local.length === 1 && remote.length === 1 ? remote[0] : undefined);
    if (match !== undefined) map[p.port] = match.targetPort;
  }
  return Object.freeze(map);
}
