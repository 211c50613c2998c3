/** Small readers shared by the traffic validators: durations, percentages, label selectors. */
import type { ConfigNode } from '../../common/config-node.js';
import { TRAFFIC_LIMITS } from './types.js';

/** Kubernetes label keys (optional DNS prefix and "/") and values; also what registrations and `--label` accept. */
export const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** A duration such as "250ms" or "15s" (`ConfigNode.duration`), in ms, at most `maxMs`. */
export function readDuration(node: ConfigNode | undefined, maxMs = 24 * 3_600_000): number | undefined {
  if (node === undefined) return undefined;
  const ms = node.duration();
  return ms !== undefined && ms > maxMs ? node.report(`must be at most ${maxMs} ms, got ${ms} ms`) : ms;
}

/** A label selector: every pair must be on the endpoint. */
export function readLabels(node: ConfigNode | undefined): Readonly<Record<string, string>> | undefined {
  if (node === undefined) return Object.freeze({});
  const labels = node.stringMap();
  if (labels === undefined) return undefined;
  const entries = Object.entries(labels);
  if (entries.length > TRAFFIC_LIMITS.labels) return node.report(`expected at most ${TRAFFIC_LIMITS.labels} labels, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (!LABEL_KEY.test(key)) return node.report(`label key ${JSON.stringify(key)} is not a Kubernetes label key`);
    if (!LABEL_VALUE.test(value) || value.length > 63) return node.report(`label value ${JSON.stringify(value)} of ${key} is not a Kubernetes label value`);
  }
  return Object.freeze(labels);
}

