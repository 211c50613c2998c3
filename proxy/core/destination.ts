/**
 * Where a connection or request is going, once resolved: a service, its namespace and the workload port
 * (the service's targetPort). Outbound listeners, transparent capture and zone ingress all resolve to
 * this shape before the tunnel sees the connection, so the tunnel never needs to know how it was captured.
 *
 * On the wire it is the CONNECT `:authority` (and the `trellis-target` header of HTTP requests):
 * `<service>.<namespace>:<targetPort>`.
 */
import { TrellisError } from '../../common/errors.js';
import type { Endpoint } from '../../api/data-plane.js';
import { CODE } from '../../common/error-codes.js';

export interface Destination {
  readonly service: string;
  readonly namespace: string;
  /** The port the destination workload's app listens on (the service port's targetPort). */
  readonly port: number;
}

/** Stable map key of a service: `<service>.<namespace>`. */
export function serviceKey(service: string, namespace: string): string {
  return `${service}.${namespace}`;
}

export function formatAuthority(destination: Destination): string {
  return `${destination.service}.${destination.namespace}:${destination.port}`;
}

/** Parses `<service>.<namespace>:<port>`; undefined when malformed (the caller refuses the stream). */
export function parseAuthority(authority: string | undefined): Destination | undefined {
  if (authority === undefined) return undefined;
  const colon = authority.lastIndexOf(':');
  const dot = authority.indexOf('.');
  if (colon <= 0 || dot <= 0 || dot > colon || authority.indexOf('.', dot + 1) !== -1) return undefined;
  const portText = authority.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  const service = authority.slice(0, dot);
  const namespace = authority.slice(dot + 1, colon);
  if (service === '' || namespace === '') return undefined;
  return { service, namespace, port };
}

/** Where a connection to this endpoint is actually dialled: its own tunnel port, or its zone's ingress. */
export function dialAddress(endpoint: Endpoint): { readonly host: string; readonly port: number } {
  if (endpoint.ingress !== undefined) return { host: endpoint.ingress.address, port: endpoint.ingress.port };
  return { host: endpoint.address, port: endpoint.tunnelPort };
}

/** Stable identity of an endpoint for load balancing, health and pooling. */
export function endpointKey(endpoint: Endpoint): string {
  const via = endpoint.ingress === undefined ? '' : `@${endpoint.ingress.address}:${endpoint.ingress.port}`;
  return `${endpoint.address}:${endpoint.tunnelPort}${via}`;
}

export function assertPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TrellisError(CODE.PROXY_PORT_INVALID, `${what}: ${port} is not a port (1-65535)`, { side: 'input' });
  }
}
