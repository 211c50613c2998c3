/**
 * An HTTP/1.1 request head as traffic management sees it: the `TrafficRequest` route rules match on, and
 * the head with a rule's header edits applied. Edits never touch framing or mesh fields (the validator
 * refuses those names), and the edited head is serialised by the same rules as any forwarded head.
 */
import { normalizeRequestPath } from '../../../policy/http-match.js';
import type { HeaderEdits, TrafficRequest } from '../../../policy/traffic/index.js';
import { serializeRequestHead } from '../../http1/message.js';
import type { HeaderField, RequestHead } from '../../http1/types.js';

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
