/**
 * The gateway's client-facing listeners across reloads. A reload's listeners are compared with those in
 * force by name: one whose spec (address, port, protocol, TLS certificates, client-certificate auth) and
 * connection limits are unchanged keeps serving untouched; a new or changed one is bound first (a changed
 * one on the same port beside its predecessor, listeners.ts binds with SO_REUSEPORT); if any cannot bind,
 * those just bound are closed and the reload is refused whole, the listeners in force untouched. Only when
 * the whole reload goes ahead are the removed and replaced listeners closed: they stop accepting and drain
 * their connections within the grace (listener-drain.ts).
 */
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/log.js';
import type { GatewayConfig, GatewayLimits, ListenerSpec } from './config-types.js';
import type { RunningListener } from './listeners.js';

export type OpenListener = (spec: ListenerSpec, limits: GatewayLimits) => Promise<RunningListener>;

/** Listeners bound for a reload, not yet in force. */
export interface PreparedListeners {
  /** Puts them in force; the ones they replace or that are gone drain within `graceMs`. */
  commit(graceMs: number): void;
  /** The reload did not go ahead: closes what was bound for it. */
  abort(): Promise<void>;
}

/** What decides whether a listener is kept: everything its servers are built from (the body limit is read per request). */
function fingerprint(spec: ListenerSpec, limits: GatewayLimits): string {
  return JSON.stringify({ spec, limits: { ...limits, maxBodyBytes: undefined } });
}

export class ListenerSet {
  private inForce = new Map<string, { listener: RunningListener; fingerprint: string }>();
  private readonly draining = new Set<Promise<void>>();

  constructor(private readonly open: OpenListener, private readonly log: Logger) {}

  /** Binds the listeners of `config` (at start nothing is in force; a failure closes what was bound and throws). */
  async prepare(config: GatewayConfig): Promise<PreparedListeners> {
    const next = new Map<string, { listener: RunningListener; fingerprint: string }>();
    const bound: RunningListener[] = [];
    try {
      for (const spec of config.listeners) {
        const print = fingerprint(spec, config.limits);
        const current = this.inForce.get(spec.name);
        if (current !== undefined && current.fingerprint === print) {
          next.set(spec.name, current);
          continue;
        }
        const listener = await this.open(spec, config.limits).catch((err: unknown) => {
          throw new Error(`listener ${spec.name} cannot bind ${spec.address}:${spec.port}: ${(err as Error).message}`);
        });
        bound.push(listener);
        next.set(spec.name, { listener, fingerprint: print });
      }
    } catch (err) {
      await Promise.all(bound.map((l) => l.close(0)));
      throw err;
    }
    return {
      commit: (graceMs) => {
        const kept = new Set([...next.values()].map((e) => e.listener));
        const leaving = [...this.inForce.values()].map((e) => e.listener).filter((l) => !kept.has(l));
        this.inForce = next;
        for (const l of leaving) {
          this.log.info({ listener: l.spec.name, address: l.address() }, 'gateway listener removed or replaced; draining its connections');
          const done: Promise<void> = l.close(graceMs).finally(() => this.draining.delete(done));
          this.draining.add(done);
        }
      },
      abort: async () => {
        await Promise.all(bound.map((l) => l.close(0)));
      },
    };
  }

  addresses(): { readonly name: string; readonly address: AddressInfo }[] {
    return [...this.inForce.values()].map((e) => ({ name: e.listener.spec.name, address: e.listener.address() }));
  }

  /** Closes every listener, in force or still draining, within `graceMs`. */
  async close(graceMs: number): Promise<void> {
    const all = [...this.inForce.values()].map((e) => e.listener.close(graceMs));
    this.inForce.clear();
    await Promise.all([...all, ...this.draining]);
  }
}
