/**
 * A pod's labels as its endpoint's labels (`Endpoint.labels`): what TrafficRoute backends select, as a
 * registration's `--label` does outside Kubernetes. Istio and Kuma users label pods `version: v2`; that
 * is all it takes.
 *
 * Labels that name one pod or one rollout (`pod-template-hash`, `controller-revision-hash`, the
 * StatefulSet pod name and index, `pod-template-generation`) are left out: they select nothing a route
 * wants and would make endpoints change on every rollout. A pod labelled only with the recommended
 * `app.kubernetes.io/version` gets `version` from it too, so `labels: { version: v2 }` selects either
 * convention. At most 16 are kept (the registration limit): `version` first, then by name; invalid keys
 * or values (which the API server would not store anyway) are skipped.
 */
import { LABEL_KEY, LABEL_VALUE } from '../../policy/traffic/spec-readers.js';

const PER_POD = new Set(['pod-template-hash', 'controller-revision-hash', 'statefulset.kubernetes.io/pod-name', 'apps.kubernetes.io/pod-index', 'pod-template-generation']);
/** The registration limit (control/registration.ts). */
export const MAX_ENDPOINT_LABELS = 16;
const RECOMMENDED_VERSION = 'app.kubernetes.io/version';

export function endpointLabelsOfPod(labels: Readonly<Record<string, unknown>>): Readonly<Record<string, string>> | undefined {
  const kept: [string, string][] = [];
  for (const [key, value] of Object.entries(labels)) {
    if (PER_POD.has(key) || typeof value !== 'string' || !LABEL_KEY.test(key) || !LABEL_VALUE.test(value) || value.length > 63) continue;
    kept.push([key, value]);
  }
  const recommended = kept.find(([k]) => k === RECOMMENDED_VERSION);
  if (recommended !== undefined && !kept.some(([k]) => k === 'version')) kept.push(['version', recommended[1]]);
  if (kept.length === 0) return undefined;
  kept.sort(([a], [b]) => (a === 'version' ? -1 : b === 'version' ? 1 : a < b ? -1 : a > b ? 1 : 0));
  const out: Record<string, string> = {};
  // defineProperty: a label named `__proto__` is a plain key, never the prototype.
  for (const [k, v] of kept.slice(0, MAX_ENDPOINT_LABELS)) Object.defineProperty(out, k, { value: v, enumerable: true });
  return Object.freeze(out);
}
