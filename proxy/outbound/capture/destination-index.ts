/**
 * Transparent capture's map from an original destination (address, port) to a mesh route: built once per
 * config change from the upstream services, frozen, and swapped whole, so a lookup per connection is two
 * map reads and allocates nothing.
 *
 * Two kinds of address name a service:
 * - a virtual IP (Kubernetes ClusterIP): the port dialled is a *service* port (`ServicePort.port`);
 * - an endpoint address (a pod or VM IP): the port dialled is the *workload* port, that endpoint's own
 *   (`Endpoint.targetPorts`, else `ServicePort.targetPort`), because that is where the app behind it listens.
 *   The route is the service port's: the connection is balanced like any other, to whichever endpoint's
 *   own app port.
 * Either resolves to the same `OutboundRoute` the explicit listeners use. Host names (static configs may
 * give them as endpoint addresses) cannot be an original destination and are left out.
 *
 * When two services claim the same address and port (one workload in two services with the same target
 * port, or a virtual IP reused), the first in (namespace, name) order wins, so the answer does not depend
 * on the order the control plane happened to send, and the clash is reported in `conflicts`.
 */
import { isIP } from 'node:net';
import { endpointTargetPort, type UpstreamService } from '../../../api/data-plane.js';
import type { OutboundRoute } from '../route.js';

export interface TransparentIndex {
  /** The mesh route for a connection originally bound to `address:port`; undefined outside the mesh. */
  lookup(address: string, port: number): OutboundRoute | undefined;
  /** Address and port pairs known. */
  readonly size: number;
  /** One line per address:port claimed by more than one service (the loser named), for a warning. */
  readonly conflicts: readonly string[];
}

/**
 * The text form the original-destination addon reports (dotted IPv4; RFC 5952 IPv6, lower case, the longest
 * zero run compressed), so config written as `FD00::0:1` or `::ffff:10.0.0.1` still matches. Undefined for
 * anything that is not an IP address.
 */
export function canonicalAddress(address: string): string | undefined {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const family = isIP(bare);
  if (family === 4) return bare;
  if (family !== 6) return undefined;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare);
  if (mapped !== null) return mapped[1];
  // WHATWG URL serialises IPv6 hosts exactly as RFC 5952 section 4 recommends.
  const host = new URL(`http://[${bare}]/`).hostname;
  const text = host.slice(1, -1);
  const dotted = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(text);
  if (dotted !== null) {
    const hi = parseInt(dotted[1] as string, 16);
    const lo = parseInt(dotted[2] as string, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return text;
}

interface Claim {
  readonly route: OutboundRoute;
  readonly owner: string;
}

export function buildTransparentIndex(upstreams: readonly UpstreamService[]): TransparentIndex {
  const byAddress = new Map<string, Map<number, Claim>>();
  const conflicts: string[] = [];
  let size = 0;
  const claim = (address: string, port: number, route: OutboundRoute, owner: string): void => {
    let ports = byAddress.get(address);
    if (ports === undefined) {
      ports = new Map();
      byAddress.set(address, ports);
    }
    const existing = ports.get(port);
    if (existing === undefined) {
      ports.set(port, { route, owner });
      size += 1;
    } else if (existing.owner !== owner) {
      conflicts.push(`${address}:${port} is claimed by ${existing.owner} and ${owner}; ${existing.owner} is used`);
    }
  };
  const sorted = [...upstreams].sort((a, b) => (a.namespace === b.namespace ? cmp(a.name, b.name) : cmp(a.namespace, b.namespace)));
  // Virtual IPs first: a service's own name for itself outranks an address that happens to serve it.
  for (const upstream of sorted) {
    const owner = `${upstream.namespace}/${upstream.name}`;
    for (const vip of upstream.virtualIps ?? []) {
      const address = canonicalAddress(vip);
      if (address === undefined) continue;
      for (const p of upstream.ports) {
        claim(address, p.port, Object.freeze({ service: upstream.name, namespace: upstream.namespace, servicePort: p.port, targetPort: p.targetPort, protocol: p.protocol }), owner);
      }
    }
  }
  for (const upstream of sorted) {
    const owner = `${upstream.namespace}/${upstream.name}`;
    for (const endpoint of upstream.endpoints) {
      const address = canonicalAddress(endpoint.address);
      if (address === undefined) continue;
      for (const p of upstream.ports) {
        const port = endpointTargetPort(endpoint, p.port, p.targetPort);
        if (port === undefined) continue;
        claim(address, port, Object.freeze({ service: upstream.name, namespace: upstream.namespace, servicePort: p.port, targetPort: p.targetPort, protocol: p.protocol }), owner);
      }
    }
  }
  return Object.freeze({
    lookup(address: string, port: number): OutboundRoute | undefined {
      return byAddress.get(address)?.get(port)?.route;
    },
    size,
    conflicts: Object.freeze(conflicts),
  });
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
