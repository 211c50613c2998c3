/**
 * The traffic-management half of `trellis explain`: for the request asked about, the route rule that
 * matches, its backends and weights (as shares), the timeouts, retry policy, outlier detection and
 * circuit breaker in force, each with the resource it came from (or `default`: the day-one defaults);
 * given the caller's zone, the ZoneFailover order and threshold it follows.
 */
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { normalizeRequestPath } from '../policy/http-match.js';
import type { CompiledTraffic, FailoverChoice, TrafficRequest } from '../policy/traffic/index.js';

export interface TrafficExplanation {
  readonly rule: string;
  readonly backends: readonly { readonly labels: Readonly<Record<string, string>>; readonly weight: number; readonly share: string }[];
  readonly requestHeaders?: unknown;
  readonly mirror?: unknown;
  readonly timeouts: unknown;
  readonly retry: unknown;
  readonly outlierDetection: unknown;
  readonly circuitBreaker: unknown;
  readonly sources: Readonly<Record<string, string>>;
  /** For a caller in a known zone: the ZoneFailover it follows (absent: none applies, the balancer's default). */
  readonly zoneFailover?: FailoverChoice;
}

/** `--header name=value` pairs (lower-cased names, as requests are matched). */
export function parseHeaderFlags(flags: readonly string[]): [string, string][] {
  return flags.map((text) => {
    const eq = text.indexOf('=');
    const name = eq <= 0 ? '' : text.slice(0, eq).trim().toLowerCase();
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) throw new InputError(CODE.CLI_USAGE, `--header ${JSON.stringify(text)}: expected NAME=VALUE`);
    return [name, text.slice(eq + 1)];
  });
}

export function explainTraffic(
  table: CompiledTraffic,
  destination: { namespace: string; service: string },
  http: { method: string; path: string } | undefined,
  headers: readonly [string, string][],
  fromZone: string | undefined,
): TrafficExplanation {
  const q = http?.path.indexOf('?') ?? -1;
  const req: TrafficRequest = {
    method: http?.method ?? '',
    path: http === undefined ? null : normalizeRequestPath(http.path),
    query: http === undefined || q < 0 ? '' : http.path.slice(q + 1),
    headerValues: (name) => headers.filter(([n]) => n === name).map(([, v]) => v),
  };
  const rule = table.route(destination.namespace, destination.service, req);
  const settings = table.settings(destination.namespace, destination.service);
  const total = rule.rule.backends.reduce((a, b) => a + b.weight, 0);
  const zoneFailover = fromZone === undefined ? undefined : table.failover.resolve(fromZone, destination.namespace, destination.service);
  return {
    rule: rule.label,
    backends: rule.rule.backends.map((b) => ({ labels: b.labels, weight: b.weight, share: `${((b.weight * 100) / total).toFixed(1)}%` })),
    ...(rule.rule.requestHeaders === undefined ? {} : { requestHeaders: rule.rule.requestHeaders }),
    ...(rule.rule.mirror === undefined ? {} : { mirror: rule.rule.mirror }),
    timeouts: settings.timeouts,
    retry: settings.retry,
    outlierDetection: settings.outlier,
    circuitBreaker: settings.breaker,
    sources: settings.sources,
    ...(zoneFailover === undefined ? {} : { zoneFailover }),
  };
}

export function renderTraffic(t: TrafficExplanation): string {
  const labels = (l: Readonly<Record<string, string>>): string => (Object.keys(l).length === 0 ? 'every endpoint' : Object.entries(l).map(([k, v]) => `${k}=${v}`).join(','));
  const lines = ['', `route rule: ${t.rule} (from ${t.sources.route})`];
  for (const b of t.backends) lines.push(`  backend ${labels(b.labels)}: weight ${b.weight} (${b.share})`);
  if (t.requestHeaders !== undefined) lines.push(`  request headers: ${JSON.stringify(t.requestHeaders)}`);
  if (t.mirror !== undefined) lines.push(`  mirror: ${JSON.stringify(t.mirror)}`);
  lines.push(`timeouts (from ${t.sources.timeouts}): ${JSON.stringify(t.timeouts)}`);
  lines.push(`retry (from ${t.sources.retry}): ${JSON.stringify(t.retry)}`);
  lines.push(`outlier detection (from ${t.sources.outlier}): ${JSON.stringify(t.outlierDetection)}`);
  lines.push(`circuit breaker (from ${t.sources.breaker}): ${JSON.stringify(t.circuitBreaker)}`);
  if (t.zoneFailover !== undefined) lines.push(`zone failover (from ${t.zoneFailover.source}): order [${t.zoneFailover.order.join(', ')}], threshold ${t.zoneFailover.threshold * 100}%`);
  return `${lines.join('\n')}\n`;
}
