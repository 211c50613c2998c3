/**
 * The two Gateway API rules that decide whether one object may name another:
 *
 * - ReferenceGrant (gateway.networking.k8s.io/v1beta1): a reference into another namespace (a Gateway's
 *   certificateRef to a Secret, a route's backendRef to a Service) holds only when a ReferenceGrant in
 *   the *target's* namespace lists the referrer (group, kind, namespace) in `from` and the target
 *   (group, kind, and the name when given) in `to`. Same-namespace references need none.
 * - A listener's `allowedRoutes.namespaces`: `Same` (the default: the Gateway's namespace), `All`, or
 *   `Selector` (a label selector on the route's Namespace: matchLabels and matchExpressions with In,
 *   NotIn, Exists, DoesNotExist). A selector that cannot be read allows nothing.
 */
import { isObj, list, str, type Obj } from '../gateway-api.js';

export interface ObjectRef {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
}

/** Whether `from` may name `to` (the name given) across namespaces, by the ReferenceGrants in `grants`. */
export function referenceAllowed(grants: Iterable<Obj>, from: ObjectRef, to: ObjectRef & { readonly name: string }): boolean {
  if (from.namespace === to.namespace) return true;
  for (const g of grants) {
    const m = isObj(g.metadata) ? g.metadata : {};
    if (str(m.namespace) !== to.namespace) continue;
    const spec = isObj(g.spec) ? g.spec : {};
    const fromOk = list(spec.from).some((f) => (str(f.group) ?? '') === from.group && str(f.kind) === from.kind && str(f.namespace) === from.namespace);
    const toOk = list(spec.to).some((t) => (str(t.group) ?? '') === to.group && str(t.kind) === to.kind && (t.name === undefined || t.name === '' || str(t.name) === to.name));
    if (fromOk && toOk) return true;
  }
  return false;
}

function selectorMatches(selector: unknown, labels: Readonly<Record<string, unknown>>): boolean {
  if (!isObj(selector)) return false;
  const matchLabels = isObj(selector.matchLabels) ? selector.matchLabels : {};
  for (const [k, v] of Object.entries(matchLabels)) if (labels[k] !== v) return false;
  for (const e of list(selector.matchExpressions)) {
    const key = str(e.key) ?? '';
    const values = Array.isArray(e.values) ? e.values.map(String) : [];
    const has = Object.hasOwn(labels, key);
    const op = str(e.operator);
    if (op === 'In' && !(has && values.includes(String(labels[key])))) return false;
    if (op === 'NotIn' && has && values.includes(String(labels[key]))) return false;
    if (op === 'Exists' && !has) return false;
    if (op === 'DoesNotExist' && has) return false;
    if (op !== 'In' && op !== 'NotIn' && op !== 'Exists' && op !== 'DoesNotExist') return false;
  }
  return true;
}

/** Whether a listener's `allowedRoutes.namespaces` admits a route from `routeNamespace`. */
export function namespaceAllowed(listener: Obj, gatewayNamespace: string, routeNamespace: string, namespaces: ReadonlyMap<string, Obj>): boolean {
  const allowed = isObj(listener.allowedRoutes) && isObj(listener.allowedRoutes.namespaces) ? listener.allowedRoutes.namespaces : {};
  const from = str(allowed.from) ?? 'Same';
  if (from === 'All') return true;
  if (from === 'Same') return routeNamespace === gatewayNamespace;
  if (from !== 'Selector') return false;
  const ns = namespaces.get(routeNamespace);
  const meta = isObj(ns?.metadata) ? ns.metadata : {};
  // The API server sets kubernetes.io/metadata.name on every namespace; a copy without it is still matched by name.
  const labels = { 'kubernetes.io/metadata.name': routeNamespace, ...(isObj(meta.labels) ? meta.labels : {}) };
  return selectorMatches(allowed.selector, labels);
}
