/**
 * Header mapping for requests that stay HTTP/2 end to end (app → outbound sidecar → tunnel → inbound
 * sidecar → app over h2c). The rules are those of the HTTP/1.1 path (http/header-rules.ts): connection-
 * specific fields dropped (HTTP/2 forbids them and nghttp2 refuses them on receipt already), `te` only as
 * `trailers` (gRPC needs it), the app's `trellis-*` request fields dropped, the inbound's `x-forwarded-client-cert`
 * replacing the caller's, and the app's `trellis-*` response fields and trailers dropped at the inbound so only a
 * sidecar can say `trellis-error`. One header object per message, never per chunk.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { CLIENT_CERT_HEADER, MESH_HEADER_PREFIX, REQUEST_ID_HEADER, forbiddenRequestTrailer } from '../http/header-rules.js';
import { APP_PROTOCOL_HEADER, APP_PROTOCOL_H2, TARGET_HEADER } from '../core/tunnel-protocol.js';

const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings', 'host']);

function copyFields(headers: IncomingHttpHeaders, out: OutgoingHttpHeaders, dropMesh: boolean): void {
  for (const name in headers) {
    if (name.charCodeAt(0) === 0x3a /* : */ || CONNECTION_SPECIFIC.has(name)) continue;
    if (dropMesh && name.startsWith(MESH_HEADER_PREFIX)) continue;
    out[name] = headers[name];
  }
  if (typeof headers.te === 'string' && headers.te.trim().toLowerCase() === 'trailers') out.te = 'trailers';
}

/** The app's HTTP/2 request → the tunnel request (`target` names the endpoint's app port). */
export function appRequestToTunnel(headers: IncomingHttpHeaders, authority: string, target: string, requestId: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {
    ':method': headers[':method'],
    ':scheme': 'http',
    ':path': headers[':path'],
    ':authority': authority,
  };
  copyFields(headers, out, true);
  out[TARGET_HEADER] = target;
  out[REQUEST_ID_HEADER] = requestId;
  out[APP_PROTOCOL_HEADER] = APP_PROTOCOL_H2;
  return out;
}

/** The tunnel request → the request to the app over h2c, with the normalised path and the verified caller. */
export function tunnelRequestToApp(headers: IncomingHttpHeaders, path: string, requestId: string, peerId: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {
    ':method': headers[':method'],
    ':scheme': 'http',
    ':path': path,
    ':authority': headers[':authority'] ?? headers.host,
  };
  copyFields(headers, out, true);
  out[REQUEST_ID_HEADER] = requestId;
  out[CLIENT_CERT_HEADER] = `URI=${peerId}`;
  return out;
}

/** A response's fields, `:status` kept; `dropMesh` at the inbound (the app's `trellis-*` go). */
export function responseFields(headers: IncomingHttpHeaders, dropMesh: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': headers[':status'] };
  copyFields(headers, out, dropMesh);
  delete out.te;
  return out;
}

/** Trailers passed on: pseudo and connection-specific fields never, the app's `trellis-*` at the inbound. */
export function trailerFields(trailers: IncomingHttpHeaders, request: boolean, dropMesh: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in trailers) {
    if (name.charCodeAt(0) === 0x3a || CONNECTION_SPECIFIC.has(name)) continue;
    if (request ? forbiddenRequestTrailer(name) : dropMesh && name.startsWith(MESH_HEADER_PREFIX)) continue;
    out[name] = trailers[name];
  }
  return out;
}
