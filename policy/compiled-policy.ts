/**
 * The policy evaluator: all TrafficPermissions compiled once into hash indexes, then asked per request.
 *
 * Rules are filed by destination (exact service, whole namespace, whole mesh) and, inside each, by source
 * (exact service, whole namespace, any workload). A request looks up at most 3 × 3 buckets, so its cost
 * does not grow with the number of policies; only rules whose destination and `from` both name this caller
 * are looked at, and a rule's path check is bounded by its own path list. Decisions are precomputed
 * frozen objects: evaluating allocates nothing (beyond normalising an unusual path).
 *
 * Semantics, in order:
 *  1. No mesh identity: deny. An identity from another (federated) trust domain is matched only by `from`
 *     entries written as SPIFFE IDs or patterns naming that trust domain (`spiffe://other.example/...`);
 *     short names and `*` mean this mesh's trust domain only. No rule names it: deny.
 *     A `from` entry naming a zone (`east/shop/orders`, `eu-*` zone patterns) matches only a caller whose certificate
 *     proves that zone (ca/zone.ts); an entry without one matches every zone, unknown included.
 *  2. Any matching `deny` rule of an enforced policy: deny. Deny beats allow, whoever wrote it; this is what
 *     lets root-namespace (mesh-wide) policies deny in a way no service owner's allow overrides.
 *  3. Any matching `allow` rule of an enforced policy: allow, unless a `deny` rule of a dry-run policy
 *     matches, in which case allow with `enforced: false` naming that rule (log and count it).
 *  4. Otherwise deny: nothing is allowed unless a policy allows it. Dry-run `allow` rules grant nothing.
 * TCP streams (and HTTP requests without a usable path) never match an `allow` rule with HTTP or gRPC
 * conditions and always match a `deny` rule with them (`grpc` conditions are path conditions, grpc-match.ts): when the condition cannot be checked, fail closed.
 * When several rules decide alike, the reported one is the first in a fixed order: root-namespace policies
 * first, then by namespace, name and rule index.
 */
import { InputError } from '../common/errors.js';
import { HttpMatcher, normalizeRequestPath } from './http-match.js';
import { GrpcMatcher } from './grpc-match.js';
import { ANY, parseDestination, parseSourceSelector, zonePrefix, type NamePattern, type SourcePattern } from './selectors.js';
import type { AuthorizationRequest, CompileOptions, Decision, PeerIdentity, PolicyRule, TrafficPermission } from './types.js';
import { CODE } from '../common/error-codes.js';

/** A rule's request conditions (`http`, `grpc`, or both, which must then both match). */
interface RequestMatcher {
  matches(method: string, path: string): boolean;
}

class AllOf implements RequestMatcher {
  constructor(private readonly parts: readonly RequestMatcher[]) {
    Object.freeze(this);
  }

  matches(method: string, path: string): boolean {
    for (const part of this.parts) if (!part.matches(method, path)) return false;
    return true;
  }
}

interface CompiledRule {
  readonly rank: number;
  /** null: the rule has no request conditions (it matches TCP streams too). */
  readonly http: RequestMatcher | null;
  readonly decision: Decision;
}

/** The rules for one (destination pattern, source pattern) pair, each list sorted by rank. */
class Bucket {
  readonly denies: CompiledRule[] = [];
  readonly dryRunDenies: CompiledRule[] = [];
  readonly allows: CompiledRule[] = [];
}

class SourceIndex {
  readonly exact = new Map<string, Map<string, Bucket>>();
  readonly namespace = new Map<string, Bucket>();
  any: Bucket | null = null;
  /** Callers of federated trust domains, by trust domain; their `any` is the whole trust domain. */
  readonly foreign = new Map<string, SourceIndex>();
  /** Zone-qualified entries: by zone name, and by the prefix of a zone pattern (`eu-*` → `eu-`). */
  readonly zones = new Map<string, SourceIndex>();
  readonly zonePrefixes = new Map<string, SourceIndex>();

  bucket(source: SourcePattern, meshTrustDomain: string): Bucket {
    if (source.trustDomain !== undefined && source.trustDomain !== meshTrustDomain) {
      return getOrAdd(this.foreign, source.trustDomain, () => new SourceIndex()).bucket({ namespace: source.namespace, service: source.service }, meshTrustDomain);
    }
    if (source.zone !== undefined) {
      const prefix = zonePrefix(source.zone);
      const byZone = prefix === undefined ? getOrAdd(this.zones, source.zone, () => new SourceIndex()) : getOrAdd(this.zonePrefixes, prefix, () => new SourceIndex());
      return byZone.bucket({ namespace: source.namespace, service: source.service }, meshTrustDomain);
    }
    if (source.namespace === ANY) return (this.any ??= new Bucket());
    if (source.service === ANY) return getOrAdd(this.namespace, source.namespace, () => new Bucket());
    return getOrAdd(getOrAdd(this.exact, source.namespace, () => new Map<string, Bucket>()), source.service, () => new Bucket());
  }
}

function getOrAdd<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
  }
  return value;
}

function decision(allowed: boolean, enforced: boolean, policy: string | null, rule: number | null, reason: string): Decision {
  return Object.freeze({ allowed, enforced, policy, rule, reason });
}

const NO_IDENTITY = decision(false, true, null, null, 'denied: the caller presented no mesh identity');
const NO_ALLOW = decision(false, true, null, null, 'denied: no policy allows this caller (nothing is allowed unless a policy allows it)');

/** Per-request scratch: which rules matched best so far. Reused, since evaluation is synchronous. */
interface Best {
  deny: CompiledRule | null;
  dryRunDeny: CompiledRule | null;
  allow: CompiledRule | null;
}

export class CompiledPolicy {
  readonly trustDomain: string;
  readonly rootNamespace: string;
  /** The policies this was compiled from, in evaluation order (root namespace first, then namespace/name). */
  readonly policies: readonly TrafficPermission[];
  private readonly exact = new Map<string, Map<string, SourceIndex>>();
  private readonly namespace = new Map<string, SourceIndex>();
  private mesh: SourceIndex | null = null;
  private readonly foreign: Decision;
  /** The federated trust domains some `from` entry names: a caller of any other foreign one is denied at once. */
  private readonly namedTrustDomains = new Set<string>();
  private readonly best: Best = { deny: null, dryRunDeny: null, allow: null };

  /** Use `compilePolicy`. */
  constructor(policies: readonly TrafficPermission[], options: CompileOptions) {
    this.trustDomain = options.trustDomain;
    this.rootNamespace = options.rootNamespace;
    this.foreign = decision(false, true, null, null, `denied: the caller's trust domain is not this mesh's ("${options.trustDomain}") and no policy names it`);
    const seen = new Set<string>();
    for (const p of policies) {
      const key = `${p.metadata.namespace}/${p.metadata.name}`;
      if (seen.has(key)) throw new InputError(CODE.POLICY_INVALID, `duplicate policy "${key}"`);
      seen.add(key);
    }
    const sorted = sortForEvaluation(policies, options.rootNamespace);
    this.policies = Object.freeze(sorted);
    let rank = 0;
    for (const policy of sorted) {
      const key = `${policy.metadata.namespace}/${policy.metadata.name}`;
      const dest = parseDestination(policy.spec.destination, policy.metadata.namespace, options.rootNamespace);
      if (!dest.ok) throw new InputError(CODE.POLICY_INVALID, `policy ${key}: spec.destination: ${dest.message}`);
      const sources = this.destinationIndex(dest.value);
      policy.spec.rules.forEach((rule, index) => {
        const compiled = compileRule(rule, index, key, policy.spec.mode === 'dry-run', rank++);
        if (compiled === null) return;
        for (const from of rule.from) {
          const src = parseSourceSelector(from, policy.metadata.namespace);
          if (!src.ok) throw new InputError(CODE.POLICY_INVALID, `policy ${key}: spec.rules[${index}].from: ${src.message}`);
          const bucket = sources.bucket(src.value, options.trustDomain);
          if (src.value.trustDomain !== undefined && src.value.trustDomain !== options.trustDomain) this.namedTrustDomains.add(src.value.trustDomain);
          const list = rule.action === 'allow' ? bucket.allows : policy.spec.mode === 'dry-run' ? bucket.dryRunDenies : bucket.denies;
          // A rule naming the same caller twice is filed once.
          if (list[list.length - 1] !== compiled.rule) list.push(compiled.rule);
        }
      });
    }
    Object.freeze(this);
  }

  get size(): number {
    return this.policies.length;
  }

  evaluate(request: AuthorizationRequest): Decision {
    const source = request.source;
    if (source === null) return NO_IDENTITY;
    const td = source.trustDomain === this.trustDomain ? null : source.trustDomain;
    if (td !== null && !this.namedTrustDomains.has(td)) return this.foreign;
    // HTTP conditions are checked only with a method and a normalised path; otherwise the request is treated
    // as an opaque stream (allow rules with conditions do not match, deny rules with conditions do).
    let method: string | null = null;
    let path: string | null = null;
    if (request.protocol !== 'tcp' && request.http !== undefined) {
      path = normalizeRequestPath(request.http.path);
      if (path !== null) method = request.http.method;
    }
    const best = this.best;
    best.deny = best.dryRunDeny = best.allow = null;
    const { namespace: dns, service: dsvc } = request.destination;
    const exact = this.exact.get(dns)?.get(dsvc);
    if (exact !== undefined) scanZones(sourcesOf(exact, td), source, method, path, best);
    const wholeNamespace = this.namespace.get(dns);
    if (wholeNamespace !== undefined) scanZones(sourcesOf(wholeNamespace, td), source, method, path, best);
    if (this.mesh !== null) scanZones(sourcesOf(this.mesh, td), source, method, path, best);
    // Read back through a widened view: the scans above filled `best` in (TypeScript still sees the nulls).
    const found: Readonly<Best> = best;
    if (found.deny !== null) return found.deny.decision;
    if (found.allow === null) return NO_ALLOW;
    return found.dryRunDeny !== null ? found.dryRunDeny.decision : found.allow.decision;
  }

  /**
   * Whether some request from `source` to `destination` could be allowed, whatever its method and path: an
   * enforced allow rule names this caller (HTTP conditions or not), and no enforced deny rule without HTTP
   * conditions does (that one denies every request from it). Dry-run denies enforce nothing, so they never
   * make a destination unreachable. For scoping what the control plane tells an agent, not the request path.
   */
  couldAllow(source: PeerIdentity, destination: { readonly namespace: string; readonly service: string }): boolean {
    if (source.trustDomain !== this.trustDomain) return false;
    let allowed = false;
    for (const index of [this.exact.get(destination.namespace)?.get(destination.service), this.namespace.get(destination.namespace), this.mesh]) {
      if (index === undefined || index === null) continue;
      for (const bucket of [index.exact.get(source.namespace)?.get(source.service), index.namespace.get(source.namespace), index.any]) {
        if (bucket === undefined || bucket === null) continue;
        if (bucket.denies.some((rule) => rule.http === null)) return false;
        if (bucket.allows.length > 0) allowed = true;
      }
      // The caller's zone is not known here: an allow naming any zone might apply (a deny naming one might not).
      for (const byZone of [...index.zones.values(), ...index.zonePrefixes.values()]) {
        for (const bucket of [byZone.exact.get(source.namespace)?.get(source.service), byZone.namespace.get(source.namespace), byZone.any]) {
          if (bucket !== undefined && bucket !== null && bucket.allows.length > 0) allowed = true;
        }
      }
    }
    return allowed;
  }

  /** The policies whose destination covers this service, in evaluation order. For tools (`trellis explain`), not the request path. */
  policiesFor(destination: { readonly namespace: string; readonly service: string }): TrafficPermission[] {
    return this.policies.filter((p) => {
      const dest = parseDestination(p.spec.destination, p.metadata.namespace, this.rootNamespace);
      if (!dest.ok) return false;
      const d = dest.value;
      return (d.namespace === ANY || d.namespace === destination.namespace) && (d.service === ANY || d.service === destination.service);
    });
  }

  private destinationIndex(dest: NamePattern): SourceIndex {
    if (dest.namespace === ANY) return (this.mesh ??= new SourceIndex());
    if (dest.service === ANY) return getOrAdd(this.namespace, dest.namespace, () => new SourceIndex());
    return getOrAdd(getOrAdd(this.exact, dest.namespace, () => new Map<string, SourceIndex>()), dest.service, () => new SourceIndex());
  }
}

/** Compiles validated policies for one mesh (trust domain) and root namespace; the result is frozen. */
export function compilePolicy(policies: readonly TrafficPermission[], options: CompileOptions): CompiledPolicy {
  return new CompiledPolicy(policies, options);
}

export function sortForEvaluation(policies: readonly TrafficPermission[], rootNamespace: string): TrafficPermission[] {
  const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  const rootFirst = (p: TrafficPermission): number => (p.metadata.namespace === rootNamespace ? 0 : 1);
  return policies
    .slice()
    .sort((a, b) => rootFirst(a) - rootFirst(b) || cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name));
}

function compileRule(rule: PolicyRule, index: number, key: string, dryRun: boolean, rank: number): { rule: CompiledRule } | null {
  // A dry-run policy denies nothing and so grants nothing either: its allow rules cannot change a decision.
  if (dryRun && rule.action === 'allow') return null;
  const parts: RequestMatcher[] = [];
  if (rule.http !== undefined) parts.push(new HttpMatcher(rule.http.methods, rule.http.paths));
  if (rule.grpc !== undefined) parts.push(new GrpcMatcher(rule.grpc));
  const http = parts.length === 0 ? null : parts.length === 1 ? (parts[0] as RequestMatcher) : new AllOf(parts);
  let d: Decision;
  if (rule.action === 'allow') d = decision(true, true, key, index, `allowed by rule ${index} of policy ${key}`);
  else if (dryRun) d = decision(true, false, key, index, `allowed, but rule ${index} of dry-run policy ${key} would deny it (not enforced)`);
  else d = decision(false, true, key, index, `denied by rule ${index} of policy ${key}`);
  return { rule: Object.freeze({ rank, http, decision: d }) };
}

/** The callers of this mesh (`td` null) or of federated trust domain `td` (maybe none). */
function sourcesOf(index: SourceIndex, td: string | null): SourceIndex | undefined {
  return td === null ? index : index.foreign.get(td);
}

/** The entries without a zone, then those naming the caller's zone or a pattern it fits (none when unknown). */
function scanZones(index: SourceIndex | undefined, source: PeerIdentity, method: string | null, path: string | null, best: Best): void {
  if (index === undefined) return;
  scan(index, source.namespace, source.service, method, path, best);
  const zone = source.zone;
  if (zone === undefined) return;
  if (index.zones.size > 0) scan(index.zones.get(zone), source.namespace, source.service, method, path, best);
  if (index.zonePrefixes.size > 0) for (const [prefix, byPrefix] of index.zonePrefixes) if (zone.startsWith(prefix)) scan(byPrefix, source.namespace, source.service, method, path, best);
}

function scan(index: SourceIndex | undefined, ns: string, svc: string, method: string | null, path: string | null, best: Best): void {
  if (index === undefined) return;
  const exact = index.exact.get(ns)?.get(svc);
  if (exact !== undefined) scanBucket(exact, method, path, best);
  const wholeNamespace = index.namespace.get(ns);
  if (wholeNamespace !== undefined) scanBucket(wholeNamespace, method, path, best);
  if (index.any !== null) scanBucket(index.any, method, path, best);
}

function scanBucket(bucket: Bucket, method: string | null, path: string | null, best: Best): void {
  best.deny = firstMatch(bucket.denies, true, method, path, best.deny);
  best.dryRunDeny = firstMatch(bucket.dryRunDenies, true, method, path, best.dryRunDeny);
  best.allow = firstMatch(bucket.allows, false, method, path, best.allow);
}

/** The best-ranked rule of `list` that matches, or `current` when that ranks better. Lists are sorted by rank. */
function firstMatch(list: readonly CompiledRule[], isDeny: boolean, method: string | null, path: string | null, current: CompiledRule | null): CompiledRule | null {
  for (const rule of list) {
    if (current !== null && current.rank <= rule.rank) return current;
    const matched = rule.http === null || (method === null ? isDeny : rule.http.matches(method, path as string));
    if (matched) return rule;
  }
  return current;
}
