/**
 * What the one-zone and the two-zone demo share: the policy (each zone carries the same one; the
 * destination's zone decides) and how a reply is shown.
 */
import { DEMO_NAMESPACE } from '../demo/demo-mesh.js';
import { callUpstream, type UpstreamReply } from '../demo/sample-apps.js';
import { DENIED_BY_HEADER } from '../proxy/core/tunnel-protocol.js';

export const DEMO_POLICY = `# frontend may call orders.
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: orders-callers, namespace: ${DEMO_NAMESPACE} }
spec:
  destination: orders
  mode: enforce
  rules:
    - action: allow
      from: [frontend]
---
# orders may call payments with POST only; frontend never.
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: ${DEMO_NAMESPACE} }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: allow
      from: [orders]
      http: { methods: [POST] }
    - action: deny
      from: [frontend]
`;

export function describeReply(reply: UpstreamReply): string {
  return `HTTP ${reply.status}${reply.deniedBy === undefined ? '' : `, ${DENIED_BY_HEADER}: ${reply.deniedBy}`}`;
}

/** Polls frontend's checkout until the whole chain answers 200 (agents and their config take a moment). */
export async function waitForCheckout(port: number, timeoutMs: number, settled: (reply: UpstreamReply) => boolean = () => true): Promise<UpstreamReply> {
  const deadline = Date.now() + timeoutMs;
  let last: UpstreamReply = { status: 0, body: 'not tried', deniedBy: undefined };
  while (Date.now() < deadline) {
    last = await callUpstream(port, 'GET', '/checkout', DENIED_BY_HEADER);
    if (last.status === 200 && settled(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  return last;
}
