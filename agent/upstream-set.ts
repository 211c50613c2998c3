/**
 * The agent's upstreams in force. They start as the config's (`--upstream`), and an embedding process
 * (the gateway, whose destinations follow its routes) may replace them at runtime with
 * `RunningAgent.setUpstreams`: the sidecar's explicit listeners are rebuilt at once from the snapshot in
 * force (a service it already carries gets its listener before the call returns), and when the set of
 * services changes the watch re-registers, so the control plane sends the new ones (and stops sending
 * those no longer named). The call then waits, at most `timeoutMs`, for a snapshot that carries every
 * named service to be in force; past that it returns what is still waiting (the control plane is away)
 * and the listener is bound when the snapshot comes.
 */
import { ANY_UPSTREAM, type AgentSnapshot, type Registration } from '../api/control-protocol.js';
import type { UpstreamSpec } from './config.js';

/** How long `setUpstreams` waits for the control plane to send services newly named. */
export const UPSTREAM_CHANGE_TIMEOUT_MS = 10_000;

export interface UpstreamChange {
  /** Named services the snapshot in force does not carry yet (the control plane did not answer in time). */
  readonly notSent: readonly string[];
  /** Upstreams whose listener is not bound: no instance registered yet, or the port is unknown. */
  readonly waiting: readonly string[];
}

interface Waiter {
  readonly names: readonly string[];
  readonly resolve: () => void;
}

export class UpstreamSet {
  private specs: readonly UpstreamSpec[];
  private readonly waiters = new Set<Waiter>();

  constructor(initial: readonly UpstreamSpec[]) {
    this.specs = initial;
  }

  get current(): readonly UpstreamSpec[] {
    return this.specs;
  }

  /** The services the registration subscribes to, each once. */
  subscription(): Registration['upstreams'] {
    return subscriptionOf(this.specs);
  }

  /** Puts `next` in force; true when the services subscribed to changed (the watch must re-register). */
  replace(next: readonly UpstreamSpec[]): boolean {
    const before = subscriptionKey(this.specs);
    this.specs = Object.freeze([...next]);
    return subscriptionKey(this.specs) !== before;
  }

  /** Named services of the set that `snapshot` does not carry. */
  missingFrom(snapshot: AgentSnapshot | undefined): string[] {
    const carried = new Set((snapshot?.upstreams ?? []).map((u) => `${u.namespace}/${u.name}`));
    return this.subscription()
      .filter((u) => u.service !== ANY_UPSTREAM)
      .map((u) => `${u.namespace}/${u.service}`)
      .filter((name) => !carried.has(name));
  }

  /** Resolves once a snapshot carrying every one of `names` is in force (see `applied`), or after `timeoutMs`. */
  until(names: readonly string[], timeoutMs: number): Promise<void> {
    if (names.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiter: Waiter = { names, resolve: done };
      this.waiters.add(waiter);
      const waiters = this.waiters;
      function done(): void {
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve();
      }
    });
  }

  /** A snapshot is in force in the sidecar: callers waiting for the services it carries go on. */
  applied(snapshot: AgentSnapshot): void {
    if (this.waiters.size === 0) return;
    const carried = new Set(snapshot.upstreams.map((u) => `${u.namespace}/${u.name}`));
    for (const w of [...this.waiters]) if (w.names.every((n) => carried.has(n))) w.resolve();
  }

  /** On stop: nobody waits for a snapshot that will not come. */
  release(): void {
    for (const w of [...this.waiters]) w.resolve();
  }
}

export function subscriptionOf(specs: readonly UpstreamSpec[]): Registration['upstreams'] {
  const seen = new Set<string>();
  const out: { service: string; namespace: string }[] = [];
  for (const s of specs) {
    const key = `${s.namespace}/${s.service}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ service: s.service, namespace: s.namespace });
  }
  return out;
}

function subscriptionKey(specs: readonly UpstreamSpec[]): string {
  return subscriptionOf(specs)
    .map((u) => `${u.namespace}/${u.service}`)
    .sort()
    .join(',');
}
