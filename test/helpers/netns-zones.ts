/**
 * Zones of a multi-zone mesh as network namespaces, built on the lab of test/helpers/netns.ts (its names,
 * sweeping of killed runs' leftovers, and cleanup on exit and signals all apply unchanged):
 *
 *          the "internet": the lab's bridge br0, 198.18.0.0/24 (hosts in order of creation)
 *       ┌──────────────────────────┬──────────────────────────┬─────────────────────────┐
 *   [east-gw 198.18.0.11]      [west-gw 198.18.0.12]      [a host of addInternetHost, e.g. the global]
 *    NAT router; eth1 10.1.0.1  NAT router; eth1 10.2.0.1
 *       │ br-east 10.1.0.0/24      │ br-west 10.2.0.0/24
 *   [east hosts 10.1.0.11 ...]  [west hosts 10.2.0.11 ...]   (default route via their router)
 *
 * A zone is a private network with one router, like a cloud VPC behind its NAT gateway: its hosts have
 * only private addresses and a default route via the router, which masquerades the zone's range out of
 * its internet side, so they reach the internet (the global control plane, other zones' ingresses) but
 * nothing reaches them. The routers know no route to another zone's range, so private networks are not
 * routable to each other: a packet from east to 10.2.0.x dies at east's router (net unreachable).
 *
 * The way in is port forwarding on the router (`forward`), as a cloud load balancer in front of a zone
 * ingress: the router's internet address is the zone's public address, and a forwarded port goes to one
 * private host. So a zone's control plane and ingress sit on the private side like its workloads (the
 * control plane needs no way in: it dials the global), and `cut()` (the router's internet link down) takes
 * the whole zone off the internet at once: its ingress, its control plane's link to the global and its
 * workloads' way out. Addresses are the RFC 2544 test range outside and 10.<n>.0.0/24 inside, and all of
 * them exist only in the lab's namespaces: nothing is routed to or from the machine's own network.
 *
 *   const lab = await createZonesLab(['east', 'west']);
 *   const node = await lab.zone('east').addHost('east-node');
 *   await lab.zone('west').forward(15443, westIngressHost);
 */
import { createNetnsLab, type LabHost, type LabNetwork, type NetnsLab } from './netns.js';

export interface LabZone {
  readonly name: string;
  /** The zone's private network (10.<n>.0.0/24). */
  readonly network: LabNetwork;
  /** The NAT router: eth0 on the internet at the zone's public address, eth1 on the private network at .1. */
  readonly router: LabHost;
  /** The router's internet address: where other zones reach this zone's forwarded ports. */
  readonly publicAddress: string;
  /** A host on the private network, its default route via the router. */
  addHost(name: string): Promise<LabHost>;
  /** Forwards TCP `port` of the public address to the same port of `host` (on this zone's network). */
  forward(port: number, host: LabHost): Promise<void>;
  /** Takes the router's internet link down: the zone is cut off, the link's packets dropped. */
  cut(): Promise<void>;
  /** Brings the internet link back. */
  restore(): Promise<void>;
}

export interface ZonesLab {
  readonly lab: NetnsLab;
  readonly zones: readonly LabZone[];
  zone(name: string): LabZone;
  /** A host on the internet itself (a global control plane), no NAT in front of it. */
  addInternetHost(name: string): Promise<LabHost>;
  cleanup(): Promise<void>;
}

const MAX_ZONES = 9;

async function makeZone(lab: NetnsLab, name: string, index: number): Promise<LabZone> {
  const network = lab.addNetwork(name, `10.${index + 1}.0.`);
  const router = await lab.addHost(`${name}-gw`);
  lab.attach(router, network, 'eth1', `${network.prefix}1`);
  // The router's own forwarding only; a namespace starts with it off and the root namespace is untouched.
  await lab.exec(router, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await lab.exec(router, ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', network.cidr, '-o', 'eth0', '-j', 'MASQUERADE']);
  const hosts = new Set<LabHost>();
  return {
    name,
    network,
    router,
    publicAddress: router.ipv4,
    async addHost(hostName: string) {
      const host = await lab.addHost(hostName, { network, gateway: `${network.prefix}1` });
      hosts.add(host);
      return host;
    },
    async forward(port: number, host: LabHost) {
      if (!hosts.has(host)) throw new Error(`${host.name} is not a host of zone ${name}`);
      await lab.exec(router, ['iptables', '-t', 'nat', '-A', 'PREROUTING', '-i', 'eth0', '-d', router.ipv4, '-p', 'tcp', '--dport', String(port), '-j', 'DNAT', '--to-destination', `${host.ipv4}:${port}`]);
    },
    async cut() {
      await lab.exec(router, ['ip', 'link', 'set', 'eth0', 'down']);
    },
    async restore() {
      await lab.exec(router, ['ip', 'link', 'set', 'eth0', 'up']);
    },
  };
}

/** One lab with the internet (the lab's own network) and a zone per name, each with its router. */
export async function createZonesLab(names: readonly string[]): Promise<ZonesLab> {
  if (names.length === 0 || names.length > MAX_ZONES) throw new Error(`1 to ${MAX_ZONES} zones, not ${names.length}`);
  if (new Set(names).size !== names.length) throw new Error(`zone names repeat: ${names.join(', ')}`);
  const lab = await createNetnsLab();
  try {
    const zones: LabZone[] = [];
    for (const [i, name] of names.entries()) zones.push(await makeZone(lab, name, i));
    return {
      lab,
      zones,
      zone(name: string) {
        const zone = zones.find((z) => z.name === name);
        if (zone === undefined) throw new Error(`no zone ${name} in this lab`);
        return zone;
      },
      addInternetHost: (name: string) => lab.addHost(name),
      cleanup: () => lab.cleanup(),
    };
  } catch (err) {
    await lab.cleanup();
    throw err;
  }
}
