/**
 * Port protocols, one list for every place that reads one: registrations, the static config, the agent's
 * flags, the injector's annotation and Kubernetes Services.
 *
 * - `tcp`: opaque byte streams.
 * - `http`: HTTP/1.1 per request; a client that opens with the HTTP/2 preface (prior knowledge, h2c) is
 *   served as HTTP/2 on the same port (as Istio's protocol sniffing does), and the destination app is then
 *   reached over HTTP/2 too (the client's protocol, Istio's `useClientProtocol`).
 * - `http2`: HTTP/2 (prior knowledge, h2c) both ways; no HTTP/1.1 on the port.
 * - `grpc`: `http2` whose errors made by the mesh are gRPC statuses even without `content-type:
 *   application/grpc` (a declared gRPC port has no other clients).
 *
 * Names follow Istio and Kuma: a port named `http2`/`http2-*` is HTTP/2, `grpc`/`grpc-*` (and
 * `grpc-web-*`) gRPC, `http`/`http-*` HTTP/1.1; a Service's `appProtocol` wins over the name:
 * `kubernetes.io/h2c` and `http2` are HTTP/2, `grpc` gRPC, `http` and `kubernetes.io/http` HTTP/1.1, anything else
 * (`kubernetes.io/ws`, `https`, `tls`...) TCP, which is always safe.
 */
export type PortProtocol = 'tcp' | 'http' | 'http2' | 'grpc';

export const PORT_PROTOCOLS: readonly PortProtocol[] = Object.freeze(['tcp', 'http', 'http2', 'grpc']);

export function isPortProtocol(value: unknown): value is PortProtocol {
  return value === 'tcp' || value === 'http' || value === 'http2' || value === 'grpc';
}

/** Parsed per request (any of the HTTP protocols): policy `http`/`grpc` rules apply to it. */
export function isHttpFamily(protocol: PortProtocol): boolean {
  return protocol !== 'tcp';
}

/** Spoken as HTTP/2 only (no HTTP/1.1 on the port). */
export function isHttp2Only(protocol: PortProtocol): boolean {
  return protocol === 'http2' || protocol === 'grpc';
}

/** A port name's protocol, as Istio and Kuma read names; `undefined` when the name says nothing. */
export function protocolFromPortName(name: string | undefined): PortProtocol | undefined {
  const lower = name?.toLowerCase() ?? '';
  const prefix = /^([a-z0-9]+)(?:-|$)/.exec(lower)?.[1];
  // gRPC-Web is HTTP/1.1 or HTTP/2 from browsers: an `http` port serves both.
  if (prefix === 'http' || lower === 'grpc-web' || lower.startsWith('grpc-web-')) return 'http';
  if (prefix === 'http2' || prefix === 'h2c') return 'http2';
  if (prefix === 'grpc') return 'grpc';
  return undefined;
}

/** A Kubernetes `appProtocol` (case-insensitive): `kubernetes.io/h2c` and `grpc` are HTTP/2. */
export function protocolFromAppProtocol(appProtocol: string): PortProtocol {
  switch (appProtocol.toLowerCase()) {
    case 'http':
    case 'kubernetes.io/http':
      return 'http';
    case 'http2':
    case 'h2c':
    case 'kubernetes.io/h2c':
      return 'http2';
    case 'grpc':
      return 'grpc';
    default:
      return 'tcp';
  }
}
