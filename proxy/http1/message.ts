/**
 * Writing HTTP/1.1 heads for the lane path (raw HTTP/1.1 between sidecars, see outbound/http/lane-pool.ts):
 * a parsed request head re-serialised with the mesh's header rules, and the mesh's own failure answers
 * as raw bytes.
 *
 * The rules are http/header-rules.ts's, the ones the HTTP/2 path applies too, so an app sees the same request
 * whichever way it travelled: hop-by-hop fields (and those `Connection` names) are dropped, `trellis-*`
 * fields can never come from an app, the caller's `x-request-id` is kept only when it is a sane token,
 * and the inbound side alone sets `x-forwarded-client-cert`. `Transfer-Encoding` and `Content-Length`
 * are kept: the body travels as the caller framed it, and both sidecars checked that framing.
 */
import { STATUS_CODES } from 'node:http';
import type { OutgoingHttpHeaders } from 'node:http';
import type { HeaderField, RequestHead, ResponseHead } from './types.js';
import { failureBody, failureHeaders, type HttpFailure } from '../http/errors.js';
import { CLIENT_CERT_HEADER, droppedFromRawRequest, isConnectionField, isMeshHeader, REQUEST_ID_HEADER } from '../http/header-rules.js';


/** The value of the first field named `name` (lower-case), if any. */
export function fieldValue(fields: readonly HeaderField[], name: string): string | undefined {
  for (const f of fields) if (f.name === name) return f.value;
  return undefined;
}

/**
 * The request head to send on: `target` as the request target, the mesh's drop rules applied, then
 * `x-request-id: requestId` and, on the inbound side, `x-forwarded-client-cert: URI=<peer>`.
 * `TE: trailers` survives (gRPC-style callers need it); any other TE value does not.
 */
export function serializeRequestHead(head: RequestHead, target: string, requestId: string, peerId: string | undefined): Buffer {
  const tokens = head.connectionTokens;
  let out = `${head.method} ${target} HTTP/1.1\r\n`;
  for (const field of head.fields) {
    if (droppedFromRawRequest(field.name, tokens)) {
      if (field.name === 'te' && field.value.toLowerCase() === 'trailers') out += 'te: trailers\r\n';
      continue;
    }
    out += `${field.name}: ${field.value}\r\n`;
  }
  out += `${REQUEST_ID_HEADER}: ${requestId}\r\n`;
  if (peerId !== undefined) out += `${CLIENT_CERT_HEADER}: URI=${peerId}\r\n`;
  out += '\r\n';
  return Buffer.from(out, 'latin1');
}

/**
 * The request head to send on, like `serializeRequestHead`, but reusing the received bytes when nothing in
 * them has to change (the common case: no hop-by-hop or mesh fields, target unchanged): the head minus its
 * final CRLF, then the added fields. `raw[start, start + length)` is the head as parsed (`HeadParse.length`).
 */
export function forwardRequestHead(raw: Buffer, start: number, length: number, head: RequestHead, target: string, requestId: string, peerId: string | undefined): Buffer {
  if (target !== head.target || raw[start] === 0x0d /* leading empty lines were skipped */) return serializeRequestHead(head, target, requestId, peerId);
  let idPresent = false;
  const tokens = head.connectionTokens;
  for (const field of head.fields) {
    if (field.name === REQUEST_ID_HEADER && field.value === requestId && !idPresent) {
      idPresent = true;
      continue;
    }
    if (droppedFromRawRequest(field.name, tokens)) return serializeRequestHead(head, target, requestId, peerId);
  }
  let extra = idPresent ? '' : `${REQUEST_ID_HEADER}: ${requestId}\r\n`;
  if (peerId !== undefined) extra += `${CLIENT_CERT_HEADER}: URI=${peerId}\r\n`;
  if (extra === '') return raw.subarray(start, start + length);
  const out = Buffer.allocUnsafe(length + extra.length);
  raw.copy(out, 0, start, start + length - 2);
  out.write(`${extra}\r\n`, length - 2, 'latin1');
  return out;
}

/**
 * Whether an app's response head must be re-serialised before it goes on (rare): it carries `trellis-*`
 * fields, which only the mesh may send, or a Content-Length beside chunked coding, which a forwarder must
 * remove (RFC 9112 6.3).
 */
export function responseNeedsCleaning(head: ResponseHead): boolean {
  const chunked = head.body.kind === 'chunked';
  for (const f of head.fields) {
    if (isMeshHeader(f.name)) return true;
    if (chunked && f.name === 'content-length') return true;
  }
  return false;
}

/**
 * A response head re-serialised, for the rare cases that need it: without the app's `trellis-*` fields
 * (`dropMeshFields`: an app cannot forge a mesh error), or saying `Connection: close` (`close`: the caller
 * asked for it, and the kept-alive lane answered for a connection that stays open).
 */
export function serializeResponseHead(head: ResponseHead, options: { readonly dropMeshFields: boolean; readonly close: boolean }): Buffer {
  let out = `HTTP/1.${head.minorVersion} ${head.status} ${head.reason}\r\n`;
  // Content-Length never survives beside chunked coding (RFC 9112 6.3).
  const chunked = head.body.kind === 'chunked';
  for (const f of head.fields) {
    if (options.dropMeshFields && isMeshHeader(f.name)) continue;
    if (chunked && f.name === 'content-length') continue;
    if (options.close && isConnectionField(f.name)) continue;
    out += `${f.name}: ${f.value}\r\n`;
  }
  if (options.close) out += 'connection: close\r\n';
  return Buffer.from(`${out}\r\n`, 'latin1');
}

/**
 * The inbound's rewrite hook for an app's response head: an app may not send `trellis-*` fields, nor
 * Content-Length beside chunked coding, so such a head is re-written (undefined: passed on as received).
 */
export function cleanedResponseHead(head: ResponseHead): Buffer | undefined {
  return responseNeedsCleaning(head) ? serializeResponseHead(head, { dropMeshFields: true, close: false }) : undefined;
}

/**
 * The outbound's rewrite hook when the caller asked to close (`Connection: close`, dropped as hop-by-hop
 * before the lane): the answer came for a kept-alive lane, so it is made to say close, as the destination's
 * server would have (undefined: it says so already).
 */
export function closingResponseHead(head: ResponseHead): Buffer | undefined {
  return head.keepAlive ? serializeResponseHead(head, { dropMeshFields: false, close: true }) : undefined;
}

/**
 * A complete raw HTTP/1.1 response for a failure the mesh produced (the same headers and body as the
 * HTTP/2 path's), optionally with `Connection: close` and extra fields (`trellis-denied-by`).
 */
export function failureResponseBytes(failure: HttpFailure, correlationId: string, close: boolean, extra?: Readonly<Record<string, string>>): Buffer {
  const body = failureBody(failure, correlationId);
  const headers: OutgoingHttpHeaders = failureHeaders(failure, correlationId, body, false);
  let out = `HTTP/1.1 ${failure.status} ${STATUS_CODES[failure.status] ?? 'Error'}\r\n`;
  for (const name in headers) out += `${name}: ${String(headers[name])}\r\n`;
  if (extra !== undefined) for (const name in extra) out += `${name}: ${extra[name]}\r\n`;
  if (close) out += 'connection: close\r\n';
  return Buffer.from(`${out}\r\n${body}`, 'utf8');
}
