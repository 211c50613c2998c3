/**
 * Which services an agent is told about: in a zero-trust mesh, only those its identity could ever be
 * allowed to call. A service that no policy lets it reach is none of its business, and its endpoints
 * would only help an intruder holding that identity map the mesh.
 *
 * "Could ever be allowed" is `CompiledPolicy.couldAllow`: some enforced allow rule names the caller
 * (methods and paths are ignored: one allowed request is enough), and no enforced deny rule without HTTP
 * conditions (a guardrail that refuses everything from it) does. A dry-run deny hides nothing.
 *
 * Scoped today: wildcard subscriptions (`ns/*`, `*` / `*`). Not scoped: services an agent names, which
 * its operator configured it to call; see docs/architecture.md ("Discovery scoping") for why.
 *
 * Answers depend only on (caller identity, service), so they are cached per policy set; the cache is
 * dropped when it grows past a bound rather than kept per pair forever.
 */
import { compilePolicy, type CompiledPolicy } from '../policy/compiled-policy.js';
import type { TrafficPermission } from '../policy/types.js';

const MAX_CACHED_ANSWERS = 200_000;

export interface ScopedCaller {
  readonly namespace: string;
  readonly service: string;
}

export class DiscoveryScope {
  private readonly answers = new Map<string, boolean>();

  private constructor(private readonly policy: CompiledPolicy) {}

  static of(policies: readonly TrafficPermission[], trustDomain: string, rootNamespace: string): DiscoveryScope {
    return new DiscoveryScope(compilePolicy(policies, { trustDomain, rootNamespace }));
  }

  /** Whether `caller` may learn of `namespace/service`. */
  mayReach(caller: ScopedCaller, namespace: string, service: string): boolean {
    const key = `${caller.namespace}/${caller.service}>${namespace}/${service}`;
    let answer = this.answers.get(key);
    if (answer === undefined) {
      answer = this.policy.couldAllow({ trustDomain: this.policy.trustDomain, namespace: caller.namespace, service: caller.service }, { namespace, service });
      if (this.answers.size >= MAX_CACHED_ANSWERS) this.answers.clear();
      this.answers.set(key, answer);
    }
    return answer;
  }
}
