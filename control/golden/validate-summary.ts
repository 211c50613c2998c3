/**
 * A golden-metrics summary is untrusted input from an agent: checked here whole before anything of it is
 * counted. Every field is typed and bounded; unknown fields are refused (a newer agent's additions must be
 * agreed, not guessed at); and an agent may report only for its own identity: inbound edges and denials
 * must name it as the destination, outbound edges as the source. A refusal names the first problem.
 */
import { LATENCY_SLOTS, POLICY_LABEL, SERVICE_LABEL, SUMMARY_LIMITS, type DenialSample, type EdgeSample, type GoldenSummary } from '../../api/golden-summary.js';
import { CODE } from '../../common/error-codes.js';
import { HttpError } from '../http-io.js';

const SUMMARY_KEYS = new Set(['instanceId', 'intervalMs', 'configVersion', 'policyRevision', 'configStale', 'certNotAfter', 'edges', 'denials', 'truncated']);
const EDGE_KEYS = new Set(['direction', 'source', 'destination', 'protocol', 'requests', 'failures', 'latency']);
const DENIAL_KEYS = new Set(['source', 'destination', 'policy', 'rule', 'enforced', 'count']);
/** What `policyRevision` (control/policy-source.ts) gives: `empty`, or `sha256:` and a hex prefix of the digest. */
const REVISION = /^(?:empty|sha256:[0-9a-f]{16,64})$/;

function invalid(message: string): never {
  throw new HttpError(CODE.CONTROL_SUMMARY_INVALID, `golden-metrics summary: ${message}`);
}

function record(value: unknown, keys: ReadonlySet<string>, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalid(`${where} must be an object`);
  for (const key of Object.keys(value)) if (!keys.has(key)) invalid(`${where} has an unknown field "${key}"`);
  return value as Record<string, unknown>;
}

function count(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > SUMMARY_LIMITS.maxCount) invalid(`${where} must be an integer from 0 to ${SUMMARY_LIMITS.maxCount}`);
  return value;
}

function label(value: unknown, pattern: RegExp, where: string): string {
  if (typeof value !== 'string' || value.length > SUMMARY_LIMITS.maxLabelLength || !pattern.test(value)) invalid(`${where} is not a valid name`);
  return value;
}

function edgeOf(value: unknown, self: string, where: string): EdgeSample {
  const e = record(value, EDGE_KEYS, where);
  if (e.direction !== 'inbound' && e.direction !== 'outbound') invalid(`${where}.direction must be inbound or outbound`);
  if (e.protocol !== 'http' && e.protocol !== 'tcp') invalid(`${where}.protocol must be http or tcp`);
  const source = label(e.source, SERVICE_LABEL, `${where}.source`);
  const destination = label(e.destination, SERVICE_LABEL, `${where}.destination`);
  // The one rule that keeps an agent from speaking for others: it is the callee of what it saw inbound,
  // the caller of what it sent.
  const own = e.direction === 'inbound' ? destination : source;
  if (own !== self) throw new HttpError(CODE.CONTROL_SUMMARY_FOREIGN, `golden-metrics summary: ${where} is ${e.direction} and must name ${self} as its ${e.direction === 'inbound' ? 'destination' : 'source'}, not ${own}`);
  const requests = count(e.requests, `${where}.requests`);
  const failures = count(e.failures, `${where}.failures`);
  if (failures > requests) invalid(`${where}.failures exceeds its requests`);
  let latency: number[] | undefined;
  if (e.latency !== undefined) {
    if (e.protocol !== 'http') invalid(`${where}.latency is only for http edges`);
    if (!Array.isArray(e.latency) || e.latency.length !== LATENCY_SLOTS) invalid(`${where}.latency must hold ${LATENCY_SLOTS} counts`);
    latency = e.latency.map((n, i) => count(n, `${where}.latency[${i}]`));
    if (latency.reduce((a, b) => a + b, 0) > requests) invalid(`${where}.latency counts more requests than the edge`);
  }
  return Object.freeze({ direction: e.direction, source, destination, protocol: e.protocol, requests, failures, ...(latency === undefined ? {} : { latency }) });
}

function denialOf(value: unknown, self: string, where: string): DenialSample {
  const d = record(value, DENIAL_KEYS, where);
  const destination = label(d.destination, SERVICE_LABEL, `${where}.destination`);
  if (destination !== self) throw new HttpError(CODE.CONTROL_SUMMARY_FOREIGN, `golden-metrics summary: ${where} is a denial at ${destination}; an agent reports only its own (${self})`);
  if (typeof d.rule !== 'string' || !/^(?:|[0-9]{1,4})$/.test(d.rule)) invalid(`${where}.rule must be a rule index or empty`);
  if (typeof d.enforced !== 'boolean') invalid(`${where}.enforced must be a boolean`);
  return Object.freeze({
    source: label(d.source, SERVICE_LABEL, `${where}.source`),
    destination,
    policy: label(d.policy, POLICY_LABEL, `${where}.policy`),
    rule: d.rule,
    enforced: d.enforced,
    count: count(d.count, `${where}.count`),
  });
}

function list<T>(value: unknown, max: number, where: string, one: (v: unknown, where: string) => T): T[] {
  if (!Array.isArray(value)) invalid(`${where} must be an array`);
  if (value.length > max) invalid(`${where} holds ${value.length} entries; at most ${max}`);
  return value.map((v, i) => one(v, `${where}[${i}]`));
}

/** The summary, frozen, or a refusal; `self` is the caller's `namespace/service` from its certificate. */
export function validateSummary(body: unknown, self: string): GoldenSummary {
  const s = record(body, SUMMARY_KEYS, 'the summary');
  if (typeof s.instanceId !== 'string' || s.instanceId.length === 0 || s.instanceId.length > SUMMARY_LIMITS.maxLabelLength) invalid('instanceId must be a non-empty string');
  const intervalMs = count(s.intervalMs, 'intervalMs');
  if (s.configVersion !== null && (typeof s.configVersion !== 'number' || !Number.isSafeInteger(s.configVersion) || s.configVersion < 0)) invalid('configVersion must be a non-negative integer or null');
  if (s.policyRevision !== null && (typeof s.policyRevision !== 'string' || !REVISION.test(s.policyRevision))) invalid('policyRevision must be "empty", sha256:<hex> or null');
  if (typeof s.configStale !== 'boolean') invalid('configStale must be a boolean');
  if (s.certNotAfter !== null && (typeof s.certNotAfter !== 'string' || s.certNotAfter.length > 40 || Number.isNaN(Date.parse(s.certNotAfter)))) invalid('certNotAfter must be an ISO-8601 time or null');
  return Object.freeze({
    instanceId: s.instanceId,
    intervalMs,
    configVersion: s.configVersion,
    policyRevision: s.policyRevision,
    configStale: s.configStale,
    certNotAfter: s.certNotAfter,
    edges: Object.freeze(list(s.edges, SUMMARY_LIMITS.maxEdges, 'edges', (v, w) => edgeOf(v, self, w))),
    denials: Object.freeze(list(s.denials, SUMMARY_LIMITS.maxDenials, 'denials', (v, w) => denialOf(v, self, w))),
    truncated: count(s.truncated, 'truncated'),
  });
}
