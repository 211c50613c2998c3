/**
 * What of a client's request head may reach the mesh. A client outside the mesh is trusted with nothing:
 * hop-by-hop fields (and every field its `Connection` names) are dropped, the mesh's own fields
 * (`trellis-*`, `x-forwarded-client-cert`) are dropped so no client can speak for the mesh, the forwarding
 * fields (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) are rebuilt from what this gateway saw and what the
 * configured number of trusted proxies in front of it added, and a `Connection` header naming a framing,
 * routing or mesh field is refused outright (the sidecars' rule, proxy/http/header-rules.ts).
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { acceptableRequestId, connectionTokenList, forbiddenConnectionToken, isMeshHeader, CLIENT_CERT_HEADER, REQUEST_ID_HEADER } from '../proxy/http/header-rules.js';

/** Never passed on from a client: connection-specific, framing (node re-frames), or rebuilt here. */
const DROPPED: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'transfer-encoding', 'http2-settings', 'host', 'trailer',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip', CLIENT_CERT_HEADER, REQUEST_ID_HEADER,
]);

export interface ClientView {
  /** The address of the client as far as the trusted hops let us know it. */
  readonly client: string;
  /** The X-Forwarded-For chain passed on: the client, then each trusted proxy, then the gateway's peer. */
  readonly chain: readonly string[];
}

/**
 * The client's address under `trustedHops` proxies: the peer when 0; else the entry that many places from
 * the right of X-Forwarded-For (each trusted proxy appended the address it saw). Entries left of it were
 * written by the client and are believed by nobody.
 */
export function clientView(peer: string, xff: string | string[] | undefined, trustedHops: number): ClientView {
  if (trustedHops === 0 || xff === undefined) return { client: peer, chain: [peer] };
  const listed = (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((s) => s.trim()).filter((s) => s !== '');
  const all = [...listed, peer];
  const index = Math.max(0, all.length - 1 - trustedHops);
  return { client: all[index] as string, chain: all.slice(index) };
}

/** The `Forwarded` element for one address (RFC 7239: IPv6 quoted and bracketed). */
function forwardedFor(address: string): string {
  return address.includes(':') ? `for="[${address}]"` : `for=${address}`;
}

export interface ForwardContext {
  readonly view: ClientView;
  readonly host: string;
  readonly proto: 'http' | 'https';
  /** Headers removed on top of the rules (the route's claim headers, which only the gateway may set). */
  readonly alsoDrop: ReadonlySet<string>;
}

/** The request headers passed on, or the name of the forbidden `Connection` token that refuses the request. */
export function forwardedRequestHeaders(headers: IncomingHttpHeaders, ctx: ForwardContext): OutgoingHttpHeaders | { refused: string } {
  const tokens = connectionTokenList(headers.connection);
  const forbidden = forbiddenConnectionToken(tokens, false);
  if (forbidden !== undefined) return { refused: forbidden };
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a /* : */ || DROPPED.has(name) || isMeshHeader(name) || ctx.alsoDrop.has(name)) continue;
    if (tokens.length > 0 && tokens.includes(name)) continue;
    out[name] = headers[name];
  }
  const requestId = acceptableRequestId(headers[REQUEST_ID_HEADER]);
  if (requestId !== undefined) out[REQUEST_ID_HEADER] = requestId;
  out.host = ctx.host;
  out['x-forwarded-for'] = ctx.view.chain.join(', ');
  out['x-forwarded-proto'] = ctx.proto;
  out['x-forwarded-host'] = ctx.host;
  out.forwarded = ctx.view.chain.map((a, i) => (i === 0 ? `${forwardedFor(a)};proto=${ctx.proto};host="${ctx.host}"` : forwardedFor(a))).join(', ');
  return out;
}

/** Response fields a client must not get from us as they came (node frames the response itself). */
const RESPONSE_DROPPED: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te', 'trailer']);

export function forwardedResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) if (!RESPONSE_DROPPED.has(name)) out[name] = headers[name];
  return out;
}
