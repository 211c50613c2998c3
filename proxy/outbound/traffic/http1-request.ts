/**
 * An HTTP/1.1 request head as traffic management sees it: the `TrafficRequest` route rules match on, and
 * the head with a rule's header edits applied. Edits never touch framing or mesh fields (the validator
 * refuses those names), and the edited head is serialised by the same rules as any forwarded head.
 */
import { normalizeRequestPath } from '../../../policy/http-match.js';
import type { HeaderEdits, TrafficRequest } from '../../../policy/traffic/index.js';
import { serializeRequestHead } from '../../http1/message.js';
import type { HeaderField, RequestHead } from '../../http1/types.js';
import type { IncomingHttpHeaders } from 'node:http2';
import { h1RequestToH2 } from '../../http/header-rules.js';
import { editTunnelHeaders } from './tunnel-header-edits.js';
import type { OutboundRoute } from '../route.js';
import { startMirror, type MirrorCopy, type MirrorDeps } from './mirror.js';
import type { RequestPlan } from './request-plan.js';

export function trafficRequestOf(head: RequestHead): TrafficRequest {
  const q = head.target.indexOf('?');
  return {
    method: head.method,
    path: normalizeRequestPath(head.target),
    query: q < 0 ? '' : head.target.slice(q + 1),
    headerValues(name: string): readonly string[] {
      const out: string[] = [];
      for (const f of head.fields) if (f.name === name) out.push(f.value);
      return out;
    },
  };
}

/** The head to forward with `edits` applied: removed and set fields dropped, set fields appended. */
export function editedRequestHead(head: RequestHead, edits: HeaderEdits, requestId: string): Buffer {
  const set = edits.set ?? {};
  const remove = edits.remove ?? [];
  const fields: HeaderField[] = head.fields.filter((f) => !remove.includes(f.name) && !Object.hasOwn(set, f.name));
  for (const [name, value] of Object.entries(set)) fields.push({ name, value });
  return serializeRequestHead({ ...head, fields }, head.target, requestId, undefined);
}

/**
 * The mirror copy of an HTTP/1.1 request whose plan drew one (mirror.ts): its fields as an HTTP/2 tunnel
 * request, the rule's header edits applied. A body with a length goes along (lane-exchange.ts tees it); a
 * chunked body is not copied (the lane carries it framed) and upgrades are never mirrored.
 */
export function startHttp1Mirror(deps: MirrorDeps, route: OutboundRoute, plan: RequestPlan, head: RequestHead, requestId: string): MirrorCopy | undefined {
  if (plan.mirrorLabels === undefined || head.upgrade) return undefined;
  if (head.body.kind === 'chunked') {
    plan.mirrorEnded('skipped-body');
    return undefined;
  }
  const fields: IncomingHttpHeaders = {};
  for (const f of head.fields) {
    const name = f.name.toLowerCase();
    const had = fields[name];
    fields[name] = had === undefined ? f.value : `${String(had)}${name === 'cookie' ? '; ' : ', '}${f.value}`;
  }
  const authority = head.host ?? `${route.service}.${route.namespace}:${route.servicePort}`;
  const headers = h1RequestToH2(head.method, head.target, authority, fields, '', requestId);
  const edits = plan.rule.rule.requestHeaders;
  if (edits !== undefined) editTunnelHeaders(headers, edits);
  return startMirror(deps, route, plan, headers, head.body.kind === 'length' && head.body.length > 0);
}
