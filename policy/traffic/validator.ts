/**
 * Validation of the traffic-management resources, from YAML files or as plain objects (config snapshots,
 * Kubernetes custom resources). Same contract as the TrafficPermission validator: every problem of every
 * document is reported at once (`TRELLIS_CONFIG_INVALID`, file:line:column and field path), one bad
 * document rejects the whole set, and the result is deeply frozen plain data.
 *
 * Documents of other kinds (a TrafficPermission in the same directory) are skipped here, so one policy
 * directory can hold both; the permission validator skips these in turn (`isTrafficKind`).
 */
import { deepFreeze } from '../../common/deep-freeze.js';
import { ConfigIssues } from '../../common/config-issues.js';
import type { ConfigNode, ConfigObject } from '../../common/config-node.js';
import { configNodeFromValue, parseYamlDocuments, type YamlText } from '../../common/yaml-source.js';
import { DNS_LABEL, DNS_LABEL_HINT } from '../selectors.js';
import { BREAKER_FIELDS, OUTLIER_FIELDS, RETRY_FIELDS, TIMEOUT_FIELDS, validateBreaker, validateOutlier, validateRetry, validateTimeouts } from './resilience-validator.js';
import { validateRouteRules } from './route-validator.js';
import { FAILOVER_FIELDS, reportFailoverConflicts, validateFailover } from './failover-validator.js';
import { TRAFFIC_API_VERSION, TRAFFIC_KINDS, type TrafficKind, type TrafficResource } from './types.js';

const SPEC_FIELDS: Readonly<Record<TrafficKind, readonly string[]>> = {
  TrafficRoute: ['rules'],
  RetryPolicy: RETRY_FIELDS,
  TimeoutPolicy: TIMEOUT_FIELDS,
  OutlierDetection: OUTLIER_FIELDS,
  CircuitBreaker: BREAKER_FIELDS,
  ZoneFailover: FAILOVER_FIELDS,
};

/** Spec fields a kind cannot do without (the others take defaults). */
const REQUIRED_FIELDS: Readonly<Partial<Record<TrafficKind, readonly string[]>>> = { TrafficRoute: ['rules'], ZoneFailover: ['order'] };

export function isTrafficKind(kind: unknown): kind is TrafficKind {
  return typeof kind === 'string' && (TRAFFIC_KINDS as readonly string[]).includes(kind);
}

/**
 * Each validated resource's document as it was written. The validated form is normalised (durations in
 * ms, defaults filled in), which the validator does not read back; what travels to agents in snapshots is
 * the written form, which each agent validates and normalises itself (`writtenForm`).
 */
const WRITTEN = new WeakMap<TrafficResource, unknown>();

/** The resource as its author wrote it (validating it again gives an equal resource); what snapshots carry. */
export function writtenForm(resource: TrafficResource): unknown {
  const written = WRITTEN.get(resource);
  if (written === undefined) throw new Error(`traffic resource ${resource.kind} ${resource.metadata.namespace}/${resource.metadata.name} was not made by the traffic validator`);
  return written;
}

interface Found {
  readonly resource: TrafficResource | undefined;
  readonly key: string | undefined;
  readonly at: ConfigNode | undefined;
}

/** Parses every traffic resource of the files (other kinds are skipped); throws one error listing every problem. */
export function parseTrafficFiles(files: readonly YamlText[]): TrafficResource[] {
  const issues = new ConfigIssues();
  const found: Found[] = [];
  for (const file of files) {
    for (const doc of parseYamlDocuments(file, issues)) {
      const f = validateDocument(doc, issues);
      if (f !== undefined) found.push(f);
    }
  }
  return accepted(found, issues);
}

/** Validates traffic resources received as plain objects; `source` names where they came from. */
export function validateTrafficObjects(objects: readonly unknown[], source: string): TrafficResource[] {
  const issues = new ConfigIssues();
  const found: Found[] = [];
  objects.forEach((object, i) => {
    const f = validateDocument(configNodeFromValue(object, source, `[${i}]`, issues), issues, true);
    if (f !== undefined) found.push(f);
  });
  return accepted(found, issues);
}

function accepted(found: readonly Found[], issues: ConfigIssues): TrafficResource[] {
  const first = new Map<string, ConfigNode>();
  for (const { key, at } of found) {
    if (key === undefined || at === undefined) continue;
    const earlier = first.get(key);
    if (earlier === undefined) first.set(key, at);
    else at.report(`duplicate ${key.split(' ')[0]} "${key.split(' ')[1]}" (first defined at ${earlier.file}:${earlier.line}:${earlier.column})`);
  }
  reportFailoverConflicts(found);
  issues.throwIfAny('traffic config');
  return found.map((f) => f.resource as TrafficResource);
}

/** Undefined for a document of another kind (skipped, unless `strict`: objects sent as traffic resources must be). */
function validateDocument(doc: ConfigNode, issues: ConfigIssues, strict = false): Found | undefined {
  const before = issues.count;
  const peek = doc.object({ optional: ['apiVersion', 'kind', 'metadata', 'spec'] });
  if (peek === undefined) return { resource: undefined, key: undefined, at: undefined };
  const kindNode = peek.field('kind');
  if (kindNode === undefined) {
    doc.report('missing required field "kind"');
    return { resource: undefined, key: undefined, at: undefined };
  }
  const kind = strict ? kindNode.oneOf(TRAFFIC_KINDS) : kindNode.string();
  if (kind === undefined) return { resource: undefined, key: undefined, at: undefined };
  if (!isTrafficKind(kind)) return undefined;
  for (const field of ['apiVersion', 'metadata', 'spec']) if (!peek.has(field)) doc.report(`missing required field "${field}"`);
  const apiVersion = peek.field('apiVersion')?.oneOf([TRAFFIC_API_VERSION]);
  const meta = peek.field('metadata')?.object({ required: ['name', 'namespace'], optional: ['labels', 'annotations'] });
  const nameNode = meta?.field('name');
  const name = nameNode?.string({ pattern: DNS_LABEL, expected: DNS_LABEL_HINT });
  const namespace = meta?.field('namespace')?.string({ pattern: DNS_LABEL, expected: DNS_LABEL_HINT });
  const labels = meta?.field('labels')?.stringMap();
  const annotations = meta?.field('annotations')?.stringMap();
  const required = REQUIRED_FIELDS[kind] ?? [];
  const spec = peek.field('spec')?.object({ required: ['destination', ...required], optional: SPEC_FIELDS[kind].filter((f) => !required.includes(f)) });
  const destNode = spec?.field('destination');
  const destination = destNode?.string({ maxLength: 63 });
  if (destination !== undefined && destination !== '*' && !DNS_LABEL.test(destination)) destNode?.report(`expected a service of this namespace (${DNS_LABEL_HINT}) or "*"`);
  const body = spec === undefined ? undefined : validateSpec(kind, spec);
  // A spec reader that refuses always says why; this keeps a silent refusal from passing as an empty result.
  if (spec !== undefined && body === undefined && issues.count === before) peek.field('spec')?.report('invalid spec');
  const key = name === undefined || namespace === undefined ? undefined : `${kind} ${namespace}/${name}`;
  if (issues.count > before || apiVersion === undefined || name === undefined || namespace === undefined || destination === undefined || body === undefined) {
    return { resource: undefined, key, at: nameNode };
  }
  const metadata = Object.freeze({
    name,
    namespace,
    ...(labels === undefined ? {} : { labels: Object.freeze(labels) }),
    ...(annotations === undefined ? {} : { annotations: Object.freeze(annotations) }),
  });
  const resource = Object.freeze({ apiVersion, kind, metadata, spec: Object.freeze({ destination, ...body }) }) as TrafficResource;
  WRITTEN.set(resource, deepFreeze(doc.plain()));
  return { resource, key, at: nameNode };
}

function validateSpec(kind: TrafficKind, spec: ConfigObject): object | undefined {
  switch (kind) {
    case 'TrafficRoute': {
      const rules = spec.field('rules');
      const valid = rules === undefined ? undefined : validateRouteRules(rules);
      return valid === undefined ? undefined : { rules: Object.freeze(valid) };
    }
    case 'RetryPolicy':
      return validateRetry(spec);
    case 'TimeoutPolicy':
      return validateTimeouts(spec);
    case 'OutlierDetection':
      return validateOutlier(spec);
    case 'CircuitBreaker':
      return validateBreaker(spec);
    case 'ZoneFailover':
      return validateFailover(spec);
  }
}
