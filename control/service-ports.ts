/**
 * A service's ports and, per instance, the app port each of them lands on (`Endpoint.targetPorts`).
 *
 * Instances of one service may listen on different app ports behind one service port: a Kubernetes
 * Service's named targetPort resolves per pod, and two VMs of one service may register different
 * `--app-port`s. A service port maps to one `targetPort` on the wire, so an endpoint whose app listens
 * elsewhere carries its own mapping; callers then dial each endpoint at its own app port, and never pick
 * an endpoint for a service port it does not serve.
 *
 * The rule for registrations (universal mode). A service port is identified by its name, or by its
 * number when unnamed. Instances are taken in registration order (oldest first), and each app port of an
 * instance serves, in this order of preference:
 *  1. the service port of the same name (both named);
 *  2. the service port of the same number (unless both are named and the names differ);
 *  3. for an unnamed app port still unmatched: the only unnamed service port of its protocol that the
 *     instance does not serve yet, when it is also the instance's only unmatched unnamed app port of that
 *     protocol (one HTTP port on A at 8080 and one on B at 9090 are one service port);
 *  4. otherwise a new service port of its own number (and name), served by this instance alone; when
 *     that number is already another service port's, the app port is not offered to callers.
 * Oldest first means a service port keeps the number the first instance gave it while that instance is
 * registered: a newcomer never renumbers the port callers' listeners stand for.
 *
 * The rule for a platform's definition (Kubernetes): the defined ports are the service's; an instance
 * serves a defined port on its registered port of the same name (the feed names each pod's ports after
 * the Service ports, from its EndpointSlices), else on the one numbered the port's `targetPort`.
 *
 * Pure and deterministic: the registry calls it whenever a service's instances or definition change.
 */
import type { RegisteredPort } from '../api/control-protocol.js';
import type { ServicePort } from '../api/data-plane.js';

export interface InstancePorts {
  readonly id: string;
  readonly ports: readonly RegisteredPort[];
}

export type TargetPorts = Readonly<Record<number, number>>;

export interface ServiceLayout {
  /** Sorted by port. */
  readonly ports: readonly ServicePort[];
  /** Instance id → its own mapping; undefined when it serves every port at the port's `targetPort`. */
  readonly targetPorts: ReadonlyMap<string, TargetPorts | undefined>;
}

interface Building {
  readonly port: number;
  readonly targetPort: number;
  readonly protocol: ServicePort['protocol'];
  readonly name: string | undefined;
}

export function layoutFromRegistrations(instances: Iterable<InstancePorts>): ServiceLayout {
  const ports: Building[] = [];
  const served = new Map<string, Map<number, number>>();
  for (const instance of instances) {
    const mine = new Map<number, number>();
    served.set(instance.id, mine);
    const unmatched: RegisteredPort[] = [];
    for (const r of instance.ports) {
      const s = r.name === undefined ? undefined : ports.find((p) => p.name === r.name && !mine.has(p.port));
      if (s !== undefined) mine.set(s.port, r.port);
      else unmatched.push(r);
    }
    const left: RegisteredPort[] = [];
    for (const r of unmatched) {
      const s = ports.find((p) => p.port === r.port && !mine.has(p.port) && !(p.name !== undefined && r.name !== undefined && p.name !== r.name));
      if (s !== undefined) mine.set(s.port, r.port);
      else left.push(r);
    }
    for (const r of left) {
      if (r.name === undefined) {
        const mineOfProtocol = left.filter((o) => o.name === undefined && o.protocol === r.protocol);
        const free = ports.filter((p) => p.name === undefined && p.protocol === r.protocol && !mine.has(p.port));
        if (mineOfProtocol.length === 1 && free.length === 1) {
          mine.set((free[0] as Building).port, r.port);
          continue;
        }
      }
      if (ports.some((p) => p.port === r.port)) continue;
      ports.push({ port: r.port, targetPort: r.port, protocol: r.protocol, name: r.name });
      mine.set(r.port, r.port);
    }
  }
  return finish(ports, served);
}

export function layoutFromDefinition(defined: readonly ServicePort[], instances: Iterable<InstancePorts>): ServiceLayout {
  const served = new Map<string, Map<number, number>>();
  for (const instance of instances) {
    const mine = new Map<number, number>();
    served.set(instance.id, mine);
    for (const s of defined) {
      const r = instance.ports.find((p) => (p.name ?? '') === (s.name ?? '')) ?? instance.ports.find((p) => p.port === s.targetPort);
      if (r !== undefined) mine.set(s.port, r.port);
    }
  }
  return finish(defined.map((s) => ({ port: s.port, targetPort: s.targetPort, protocol: s.protocol, name: s.name })), served);
}

function finish(building: readonly Building[], served: ReadonlyMap<string, ReadonlyMap<number, number>>): ServiceLayout {
  const ports = building.map((p) => Object.freeze({ port: p.port, targetPort: p.targetPort, protocol: p.protocol, ...(p.name === undefined ? {} : { name: p.name }) }));
  ports.sort((a, b) => a.port - b.port);
  const targetPorts = new Map<string, TargetPorts | undefined>();
  for (const [id, mine] of served) {
    // The common case (every instance alike) sends nothing new on the wire.
    const uniform = mine.size === ports.length && ports.every((p) => mine.get(p.port) === p.targetPort);
    if (uniform) {
      targetPorts.set(id, undefined);
      continue;
    }
    const own: Record<number, number> = {};
    for (const p of ports) {
      const app = mine.get(p.port);
      if (app !== undefined) own[p.port] = app;
    }
    targetPorts.set(id, Object.freeze(own));
  }
  return Object.freeze({ ports: Object.freeze(ports), targetPorts });
}

/** Two mappings alike (for "did this endpoint change"). */
export function sameTargetPorts(a: TargetPorts | undefined, b: TargetPorts | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[Number(k)] === b[Number(k)]);
}
