/**
 * A new gateway config put in force whole, or refused whole with the one in force untouched. Reloads of
 * the file and `RunningGateway.apply` (a config object, e.g. translated from the Gateway API) both come
 * here, one at a time in the order they were asked.
 *
 * The order makes "whole" true: (1) what needs a restart is refused (the mesh section: a new control
 * plane or identity is a new agent; the gateway's name, namespace and admin port); (2) destinations the new
 * routes name are added to the agent's (gateway-agent.ts, agent `setUpstreams`), so an added destination's
 * sidecar listener is bound before any request can be routed to it; (3) new and changed listeners are
 * bound (listener-set.ts); a listener that cannot bind refuses the reload, and the destinations of (2) are
 * taken back; (4) the routes, edge checks and listeners are swapped in one turn of the event loop; (5)
 * listeners removed or replaced drain within the grace, and destinations no route names any more are
 * removed from the agent: their sidecar listener stops accepting and the requests in flight on it finish.
 * A request that reaches a destination while it is going away gets the gateway's typed failure.
 */
import { CODE } from '../common/error-codes.js';
import { TrellisError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { RunningAgent } from '../agent/agent.js';
import type { GatewayConfig } from './config-types.js';
import type { ClosableEdgeChecks } from './edge.js';
import { gatewayUpstreams, unionUpstreams } from './gateway-agent.js';
import type { ListenerSet } from './listener-set.js';
import type { HandlerState } from './request-handler.js';

export type GatewayState = HandlerState & { readonly edge: ClosableEdgeChecks };

export interface ConfigSwapDeps {
  readonly agent: Pick<RunningAgent, 'setUpstreams'>;
  readonly listeners: ListenerSet;
  readonly build: (config: GatewayConfig) => GatewayState;
  readonly graceMs: number;
  readonly log: Logger;
}

/** Why `next` cannot replace `current` without a restart, or undefined when it can. */
export function needsRestart(current: GatewayConfig, next: GatewayConfig): string | undefined {
  const mesh = (c: GatewayConfig): string => JSON.stringify({ ...c.mesh, control: String(c.mesh.control) });
  if (mesh(current) !== mesh(next)) return 'the mesh section changed (a new control plane, token or identity is a new agent)';
  if (current.name !== next.name || current.namespace !== next.namespace) return 'the gateway\'s name or namespace (its mesh identity) changed';
  if (JSON.stringify(current.admin) !== JSON.stringify(next.admin)) return 'the admin port changed';
  return undefined;
}

export class ConfigSwap {
  private state: GatewayState;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly pruning = new Set<Promise<unknown>>();

  constructor(initial: GatewayState, private readonly deps: ConfigSwapDeps) {
    this.state = initial;
  }

  current(): GatewayState {
    return this.state;
  }

  /** Puts `next` in force after every earlier call settled; rejects, with the one in force unchanged, when refused. */
  apply(next: GatewayConfig, source: string): Promise<void> {
    const run = this.queue.then(() => this.swap(next, source));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async swap(next: GatewayConfig, source: string): Promise<void> {
    const { agent, listeners, log } = this.deps;
    const before = this.state.config;
    const why = needsRestart(before, next);
    if (why !== undefined) throw refused(`${source}: ${why}; restart the gateway to apply it`);
    const wanted = gatewayUpstreams(next);
    const change = await agent.setUpstreams(unionUpstreams(gatewayUpstreams(before), wanted));
    if (change.notSent.length > 0) log.warn({ source, destinations: change.notSent }, 'the control plane has not sent these destinations yet; their routes answer 503 until it does');
    let prepared;
    try {
      prepared = await listeners.prepare(next);
    } catch (err) {
      this.prune(gatewayUpstreams(this.state.config));
      throw refused(`${source}: ${(err as Error).message}`, err);
    }
    const old = this.state;
    this.state = this.deps.build(next);
    prepared.commit(this.deps.graceMs);
    old.edge.close();
    this.prune(wanted);
  }

  /** Destinations not named any more leave the agent; their listeners drain in the background. */
  private prune(wanted: ReturnType<typeof gatewayUpstreams>): void {
    const done: Promise<unknown> = this.deps.agent
      .setUpstreams(wanted, 0)
      .catch((err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'cannot remove destinations from the gateway agent'))
      .finally(() => this.pruning.delete(done));
    this.pruning.add(done);
  }

  /** Waits for the swap under way, if any (stop); destinations draining are the agent's to close. */
  async settled(): Promise<void> {
    await this.queue;
  }
}

function refused(message: string, cause?: unknown): TrellisError {
  return new TrellisError(CODE.GATEWAY_RELOAD_REFUSED, message, { side: 'input', ...(cause === undefined ? {} : { cause }) });
}
