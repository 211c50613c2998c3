/**
 * A route rule's header edits on a tunnel request's HTTP/2 fields (the app-facing HTTP/2 path, and mirror
 * copies of either path). Names are lower-case, as HTTP/2 requires; the validator already refused framing,
 * routing and mesh fields, so an edit can never change where or how the request goes.
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import type { HeaderEdits } from '../../../policy/traffic/index.js';

export function editTunnelHeaders(headers: OutgoingHttpHeaders, edits: HeaderEdits): void {
  for (const name of edits.remove ?? []) delete headers[name.toLowerCase()];
  for (const [name, value] of Object.entries(edits.set ?? {})) headers[name.toLowerCase()] = value;
}
