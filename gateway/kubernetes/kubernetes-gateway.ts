/**
 * `trellis gateway run --kubernetes --gateway NAMESPACE/NAME`: the gateway driven by the Gateway API.
 *
 * The cluster is watched (cluster-view.ts); on every change, after the burst settles, the Gateway is
 * planned again (gateway-plan.ts) and the whole config it makes is applied through the same validation
 * as a file: valid → swapped in whole; refused → the last good one stays, logged and counted
 * (`trellis_gateway_k8s_applies_total{result="refused"}`, and the gateway's own config metrics). The
 * listeners start with the first config that validates; until then nothing is bound. A Gateway deleted,
 * or moved to another class, stops being routed (no routes: 404) though its listeners stay bound. A config equal
 * to the one last tried is not tried again (a status write comes back as a watch event and must not
 * rebuild the routes). Then the statuses are written where they changed (status-writer.ts).
 */
import { dirname } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, Registry, type Metric } from 'prom-client';
import { configIssuesOf, formatConfigIssue } from '../../common/config-issues.js';
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { validateGatewayValue } from '../config-reader.js';
import { startGateway, type RunningGateway } from '../gateway.js';
import type { Obj } from '../gateway-api.js';
import { ClusterView } from './cluster-view.js';
import { sameStatus } from './conditions.js';
import { planGateway, secretNamespaces } from './gateway-plan.js';
import { statusTargets, type Programmed } from './gateway-status.js';
import { SecretFiles } from './secret-files.js';
import { StatusWriter } from './status-writer.js';

export interface KubernetesGatewayOptions {
  readonly kubeConfig: KubeConfig;
  readonly gateway: { readonly namespace: string; readonly name: string };
  /** The base config (the `--config` file without listeners and routes) and its path. */
  readonly base: Obj;
  readonly baseFile: string;
  /** A private writable directory for the listeners' Secrets (secret-files.ts). */
  readonly secretDir: string;
  /** The address every Gateway listener binds (its port is the listener's). */
  readonly listenAddress: string;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  readonly tuning?: { readonly settleMs?: number; readonly backoff?: { readonly initialMs: number; readonly maxMs: number }; readonly resyncIntervalMs?: number };
}

export interface KubernetesGateway {
  /** Resolves with the gateway once its first config is served. */
  serving(): Promise<RunningGateway>;
  current(): RunningGateway | undefined;
  /** The Kubernetes-mode metrics (also served on the admin port once the gateway runs). */
  readonly registry: Registry;
  stop(graceMs?: number): Promise<void>;
}

function problemsOf(err: unknown): string[] {
  const issues = configIssuesOf(err).map(formatConfigIssue);
  return issues.length > 0 ? issues : [describeError(err)];
}

export function startKubernetesGateway(options: KubernetesGatewayOptions): KubernetesGateway {
  const { log } = options;
  const registry = new Registry();
  const registers = [registry];
  const applies = new Counter({ name: 'trellis_gateway_k8s_applies_total', help: 'Configs from the Gateway API tried, by result: applied, refused (the last good one stays)', labelNames: ['result'], registers });
  const statusWrites = new Counter({ name: 'trellis_gateway_k8s_status_writes_total', help: 'Status subresource writes, by kind and result: written, conflict (retried), error', labelNames: ['kind', 'result'], registers });
  const writer = new StatusWriter(options.kubeConfig, log, statusWrites);
  const secrets = new SecretFiles(options.secretDir);
  let gateway: RunningGateway | undefined;
  let lastTried: { value: Obj; result: Programmed } | undefined;
  let lastMessage = '';
  let stopped = false;
  let resolveServing: (g: RunningGateway) => void = () => undefined;
  const serving = new Promise<RunningGateway>((r) => (resolveServing = r));

  const apply = async (value: Obj): Promise<Programmed> => {
    if (lastTried !== undefined && sameStatus(lastTried.value, value)) return lastTried.result;
    const source = `${options.baseFile} (Gateway ${options.gateway.namespace}/${options.gateway.name})`;
    let result: Programmed;
    try {
      if (gateway === undefined) {
        const config = validateGatewayValue(value, options.baseFile, dirname(options.baseFile), { emptyRoutes: true });
        gateway = await startGateway(config, log, { watchFile: false, ...(options.signal === undefined ? {} : { signal: options.signal }) });
        // One set of metrics on the admin port: the watches' join the gateway's own registry.
        for (const metric of registry.getMetricsAsArray()) gateway.agent.registry.registerMetric(metric as unknown as Metric);
        resolveServing(gateway);
      } else {
        await gateway.apply(value, source);
        gateway.metrics.configReloads.inc({ result: 'applied' });
        gateway.metrics.configValid.set(1);
      }
      applies.inc({ result: 'applied' });
      log.info({ routes: (value.routes as unknown[]).length, listeners: (value.listeners as unknown[]).length }, 'gateway config from the Gateway API applied');
      result = { ok: true };
    } catch (err) {
      applies.inc({ result: 'refused' });
      gateway?.metrics.configReloads.inc({ result: 'rejected' });
      gateway?.metrics.configValid.set(0);
      const problems = problemsOf(err);
      log.error({ issues: problems }, gateway === undefined ? 'gateway config from the Gateway API refused; nothing is served until one validates' : 'gateway config from the Gateway API refused; the last good one stays in force');
      result = { ok: false, message: `config refused (${gateway === undefined ? 'not serving yet' : 'the last good one is served'}): ${problems.join('; ')}` };
    }
    lastTried = { value, result };
    return result;
  };

  const reconcile = async (): Promise<void> => {
    // The Secrets first: a namespace just named is listed before any plan may call its Secret missing.
    if (!view.watchSecretsIn(secretNamespaces(view.snapshot(), options.gateway))) return;
    const snapshot = view.snapshot();
    const plan = planGateway({ snapshot, gateway: options.gateway, base: options.base, baseDir: dirname(options.baseFile), certDir: options.secretDir, listenAddress: options.listenAddress });
    if (plan.message !== lastMessage) {
      lastMessage = plan.message;
      if (plan.state !== 'ours') log.warn({ gateway: `${options.gateway.namespace}/${options.gateway.name}` }, `${plan.message}; waiting for it to change`);
    }
    if (plan.state !== 'ours') {
      // The Gateway is gone or no longer ours: its routes stop (every request 404); the listeners stay bound until restart.
      if (gateway !== undefined && lastTried !== undefined) await apply({ ...lastTried.value, routes: [] });
      return;
    }
    let programmed: Programmed = { ok: false, message: 'no listener can be served' };
    if (plan.value !== undefined) {
      try {
        await secrets.write(plan.secrets);
        programmed = await apply(plan.value);
        if (programmed.ok) await secrets.prune(plan.secrets);
      } catch (err) {
        programmed = { ok: false, message: `the listeners' Secrets could not be written: ${describeError(err)}` };
        log.error({ err: describeError(err) }, 'Secrets not written; the config in force stays');
      }
    }
    if (stopped) return;
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    for (const target of statusTargets(plan, snapshot, programmed, now)) {
      if (stopped) return;
      await writer.write(target);
    }
  };

  // One reconcile at a time; changes during one make exactly one more.
  let running: Promise<void> | undefined;
  let again = false;
  const trigger = (): void => {
    if (stopped) return;
    if (running !== undefined) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        await reconcile().catch((err: unknown) => log.error({ err: describeError(err) }, 'reconcile failed; the next change tries again'));
      } while (again && !stopped);
      running = undefined;
    })();
  };

  const view = new ClusterView({
    kubeConfig: options.kubeConfig,
    log,
    registry,
    onChange: () => {
      if (view.unsynced().length === 0) trigger();
    },
    ...(options.tuning?.settleMs === undefined ? {} : { settleMs: options.tuning.settleMs }),
    ...(options.tuning?.backoff === undefined ? {} : { backoff: options.tuning.backoff }),
    ...(options.tuning?.resyncIntervalMs === undefined ? {} : { resyncIntervalMs: options.tuning.resyncIntervalMs }),
  });
  view.start();
  void view.whenSynced().then(() => {
    log.info({ gateway: `${options.gateway.namespace}/${options.gateway.name}` }, 'Gateway API objects listed; planning');
    trigger();
  });

  return {
    serving: () => serving,
    current: () => gateway,
    registry,
    async stop(graceMs) {
      stopped = true;
      await view.stop();
      // A reconcile in flight (perhaps starting the gateway) ends before the gateway is stopped.
      await running;
      await gateway?.stop(graceMs);
    },
  };
}
