/**
 * `POST /v1/summary`: an agent's golden-metrics summary into the zone's window. The caller is known by its
 * certificate (mutual TLS, checked by the API server before this runs); this checks the rest: the body's
 * size, its shape (validate-summary.ts), that every edge and denial is the caller's own, that the instance
 * it names is one this workload registered (universal mode), and that it does not report more often than
 * `SUMMARY_LIMITS.minIntervalMs`. A refusal changes nothing: the window sees a summary whole or not at all.
 */
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import { SUMMARY_LIMITS } from '../../api/golden-summary.js';
import { CODE } from '../../common/error-codes.js';
import { isTrellisError } from '../../common/errors.js';
import { HttpError, readJsonBody } from '../http-io.js';
import { mayChange } from '../instance-ownership.js';
import type { StoredRegistration } from '../store.js';
import type { GoldenWindow } from './golden-window.js';
import { validateSummary } from './validate-summary.js';

export interface SummaryCaller {
  readonly namespace: string;
  readonly service: string;
  /** The workload its certificate belongs to (its renewal chain's first serial). */
  readonly workload: string;
}

export interface SummaryIntakeOptions {
  readonly window: GoldenWindow;
  readonly metrics: Registry;
  /** Universal mode: summaries must name an instance the caller's workload registered. Kubernetes mode: undefined. */
  readonly instances?: { get(instanceId: string): StoredRegistration | undefined };
  readonly now?: () => number;
}

/** Instances remembered for the rate check at most; the oldest are forgotten first. */
const MAX_RATE_ENTRIES = 100_000;

export class SummaryIntake {
  private readonly lastAt = new Map<string, number>();
  private readonly results: Counter<'result'>;
  private readonly now: () => number;

  constructor(private readonly options: SummaryIntakeOptions) {
    this.now = options.now ?? Date.now;
    this.results = new Counter({
      name: 'trellis_control_golden_summaries_total',
      help: 'Golden-metrics summaries from agents, by result (accepted, or the refusal code)',
      labelNames: ['result'] as const,
      registers: [options.metrics],
    });
    const window = options.window;
    new Gauge({
      name: 'trellis_control_golden_dropped',
      help: 'Golden-metrics samples not kept because the 15-minute window was at its bounds (pairs per minute, agents)',
      registers: [options.metrics],
      collect(): void {
        this.set(window.dropped);
      },
    });
  }

  async accept(req: IncomingMessage, caller: SummaryCaller): Promise<void> {
    try {
      const body = await readJsonBody(req, SUMMARY_LIMITS.maxBytes).catch((err: unknown) => {
        if (isTrellisError(err) && err.code === CODE.CONTROL_BODY_TOO_LARGE) throw new HttpError(CODE.CONTROL_SUMMARY_TOO_LARGE, `golden-metrics summary larger than ${SUMMARY_LIMITS.maxBytes} bytes`);
        throw err;
      });
      const summary = validateSummary(body, `${caller.namespace}/${caller.service}`);
      this.checkInstance(summary.instanceId, caller);
      const key = `${caller.namespace}/${caller.service}/${summary.instanceId}`;
      const now = this.now();
      const last = this.lastAt.get(key);
      if (last !== undefined && now - last < SUMMARY_LIMITS.minIntervalMs) {
        throw new HttpError(CODE.CONTROL_SUMMARY_TOO_FREQUENT, `one summary per ${SUMMARY_LIMITS.minIntervalMs} ms per instance; the last from ${summary.instanceId} was ${now - last} ms ago`);
      }
      this.lastAt.delete(key);
      this.lastAt.set(key, now);
      if (this.lastAt.size > MAX_RATE_ENTRIES) this.lastAt.delete(this.lastAt.keys().next().value as string);
      this.options.window.add(summary, caller);
      this.results.inc({ result: 'accepted' });
    } catch (err) {
      this.results.inc({ result: isTrellisError(err) ? err.code : 'error' });
      throw err;
    }
  }

  private checkInstance(instanceId: string, caller: SummaryCaller): void {
    const instances = this.options.instances;
    if (instances === undefined) return;
    const held = instances.get(instanceId);
    if (held === undefined || held.namespace !== caller.namespace || held.service !== caller.service || !mayChange(held, caller.workload)) {
      throw new HttpError(CODE.CONTROL_SUMMARY_FOREIGN, `instance ${instanceId} is not one this workload registered`);
    }
  }
}
