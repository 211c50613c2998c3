/**
 * A slow, obviously correct evaluator: it walks every rule of every policy in the documented order and
 * applies the documented semantics literally. The property test holds the compiled evaluator to it.
 * (Path normalisation is borrowed from the library; it has its own tests.)
 */
import { normalizeRequestPath, type AuthorizationRequest, type PolicyRule, type TrafficPermission } from '../../policy/index.js';

export interface ReferenceDecision {
  readonly allowed: boolean;
  readonly enforced: boolean;
  readonly policy: string | null;
  readonly rule: number | null;
}

const DENY_DEFAULT: ReferenceDecision = { allowed: false, enforced: true, policy: null, rule: null };

export function referenceEvaluate(
  policies: readonly TrafficPermission[],
  options: { trustDomain: string; rootNamespace: string },
  req: AuthorizationRequest,
): ReferenceDecision {
  const src = req.source;
  if (src === null) return DENY_DEFAULT;
  const local = src.trustDomain === options.trustDomain;

  const ordered = [...policies].sort((a, b) => {
    const ra = a.metadata.namespace === options.rootNamespace ? 0 : 1;
    const rb = b.metadata.namespace === options.rootNamespace ? 0 : 1;
    if (ra !== rb) return ra - rb;
    if (a.metadata.namespace !== b.metadata.namespace) return a.metadata.namespace < b.metadata.namespace ? -1 : 1;
    return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
  });

  const appliesTo = (p: TrafficPermission): boolean => {
    const ns = p.metadata.namespace;
    const dest = p.spec.destination;
    if (dest === '*') return ns === options.rootNamespace ? true : req.destination.namespace === ns;
    if (dest.includes('/')) {
      const [dns, dsvc] = dest.split('/');
      return dns === req.destination.namespace && (dsvc === '*' || dsvc === req.destination.service);
    }
    return ns === req.destination.namespace && dest === req.destination.service;
  };

  const fromMatches = (entry: string, policyNs: string): boolean => {
    if (entry.startsWith('spiffe://')) {
      // spiffe://TD/*, spiffe://TD/ns/NS/*, spiffe://TD/ns/NS/sa/SVC: plain string prefixes of the caller's ID.
      const id = `spiffe://${src.trustDomain}/ns/${src.namespace}/sa/${src.service}`;
      return entry.endsWith('/*') ? id.startsWith(entry.slice(0, -1)) : id === entry;
    }
    // Short names only ever mean this mesh's own trust domain.
    if (!local) return false;
    if (entry === '*') return true;
    const segments = entry.split('/');
    if (segments.length === 3) {
      // ZONE/NS/SVC: the caller's proven zone equals ZONE, or starts with PREFIX for "PREFIX*"; unknown never matches.
      const [zone, ns, svc] = segments as [string, string, string];
      if (src.zone === undefined) return false;
      if (zone.endsWith('*') ? !src.zone.startsWith(zone.slice(0, -1)) : src.zone !== zone) return false;
      return ns === '*' || (ns === src.namespace && (svc === '*' || svc === src.service));
    }
    if (!entry.includes('/')) return src.namespace === policyNs && src.service === entry;
    const [ns, svc] = entry.split('/');
    return ns === src.namespace && (svc === '*' || svc === src.service);
  };

  const path = req.protocol === 'http' && req.http !== undefined ? normalizeRequestPath(req.http.path) : null;
  const httpMatches = (rule: PolicyRule): boolean => {
    if (rule.http === undefined && rule.grpc === undefined) return true;
    if (path === null || req.http === undefined) return rule.action === 'deny';
    if (rule.http !== undefined) {
      if (rule.http.methods !== undefined && !rule.http.methods.includes(req.http.method)) return false;
      if (rule.http.paths !== undefined && !rule.http.paths.some((p) => (p.endsWith('/*') ? path.startsWith(p.slice(0, -1)) : path === p))) return false;
    }
    if (rule.grpc !== undefined) {
      // A gRPC call is POST /service/method: exactly two non-empty segments.
      const segments = path.split('/');
      if (req.http.method !== 'POST' || segments.length !== 3 || segments[1] === '' || segments[2] === '') return false;
      const [, service, method] = segments;
      return (rule.grpc.services ?? []).includes(service as string) || (rule.grpc.methods ?? []).includes(`${service}/${method}`);
    }
    return true;
  };

  let deny: ReferenceDecision | null = null;
  let dryRunDeny: ReferenceDecision | null = null;
  let allow: ReferenceDecision | null = null;
  for (const p of ordered) {
    if (!appliesTo(p)) continue;
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    const dryRun = p.spec.mode === 'dry-run';
    p.spec.rules.forEach((rule, index) => {
      if (!rule.from.some((f) => fromMatches(f, p.metadata.namespace)) || !httpMatches(rule)) return;
      if (rule.action === 'deny' && !dryRun) deny ??= { allowed: false, enforced: true, policy: key, rule: index };
      if (rule.action === 'deny' && dryRun) dryRunDeny ??= { allowed: true, enforced: false, policy: key, rule: index };
      if (rule.action === 'allow' && !dryRun) allow ??= { allowed: true, enforced: true, policy: key, rule: index };
    });
  }
  return deny ?? (allow === null ? DENY_DEFAULT : (dryRunDeny ?? allow));
}
