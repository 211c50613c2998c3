/**
 * The app's inbound ports and their protocol, read from the containers' declared ports. The protocol
 * follows the port names Istio and Kuma users already write (api/port-protocol.ts): `http-*` HTTP/1.1 (and
 * HTTP/2 clients by their preface), `http2-*` HTTP/2, `grpc-*` gRPC; anything else is opaque TCP. The
 * `trellis.dev/port-protocols` annotation overrides a port's protocol.
 */
import type { V1Container } from '@kubernetes/client-node';
import type { PortProtocol } from './annotations.js';
import { protocolFromPortName } from '../api/port-protocol.js';

export interface AppPort {
  readonly port: number;
  readonly protocol: PortProtocol;
  /** The container that declared it, for messages. */
  readonly container: string;
  readonly name?: string;
}

export function protocolFromName(name: string | undefined): PortProtocol {
  return protocolFromPortName(name) ?? 'tcp';
}

/** TCP ports of the app containers, first declaration wins; UDP and SCTP are not captured and not listed. */
export function appPorts(containers: readonly V1Container[], overrides: ReadonlyMap<number, PortProtocol>): readonly AppPort[] {
  const out: AppPort[] = [];
  const seen = new Set<number>();
  for (const container of containers) {
    for (const port of container.ports ?? []) {
      if ((port.protocol ?? 'TCP') !== 'TCP') continue;
      if (!Number.isInteger(port.containerPort) || seen.has(port.containerPort)) continue;
      seen.add(port.containerPort);
      out.push(
        Object.freeze({
          port: port.containerPort,
          protocol: overrides.get(port.containerPort) ?? protocolFromName(port.name),
          container: container.name,
          ...(port.name === undefined ? {} : { name: port.name }),
        }),
      );
    }
  }
  return Object.freeze(out);
}
