/**
 * Validation of TrafficPermission documents, from YAML files or from JSON off the wire.
 *
 * Every problem of every document is collected and thrown together (`TRELLIS_CONFIG_INVALID`, each issue
 * with file, line, column and field path); a set with any bad document is rejected whole, so a policy
 * change either applies completely or not at all. The result is deeply frozen plain data.
 */
import { ConfigIssues } from '../common/config-issues.js';
import type { ConfigNode } from '../common/config-node.js';
import { configNodeFromValue, parseYamlDocuments, type YamlText } from '../common/yaml-source.js';
import { METHOD_PATTERN, pathPatternProblem } from './http-match.js';
import { isTrafficKind } from './traffic/validator.js';
import { validateGrpc } from './grpc-match.js';
import { ANY, DNS_LABEL, DNS_LABEL_HINT, parseDestination, parseSourceSelector } from './selectors.js';
import {
  DEFAULT_ROOT_NAMESPACE,
  POLICY_API_VERSION,
  POLICY_KIND,
  type HttpConditions,
  type PolicyAction,
  type PolicyMode,
  type PolicyRule,
  type TrafficPermission,
  type ValidationContext,
} from './types.js';

/** Generous bounds: a policy bigger than this is a generated mistake, and evaluation cost follows them. */
export const POLICY_LIMITS = Object.freeze({ rules: 256, fromEntries: 256, methods: 16, paths: 256 });

const ACTIONS: readonly PolicyAction[] = ['allow', 'deny'];
const MODES: readonly PolicyMode[] = ['enforce', 'dry-run'];
const MAX_DESTINATION_LENGTH = 127;

interface Located {
  /** Undefined when the document had errors; its name still takes part in the duplicate check. */
  readonly policy: TrafficPermission | undefined;
  readonly key: string | undefined;
  readonly nameNode: ConfigNode | undefined;
}

/**
 * Parses and validates policy files (each may hold several `---` documents). Throws one InputError
 * (`TRELLIS_CONFIG_INVALID`) listing every error of every file; returns the policies in file order.
 */
export function parsePolicyFiles(files: readonly YamlText[], options: ValidationContext = {}): TrafficPermission[] {
  const issues = new ConfigIssues();
  const found: Located[] = [];
  for (const file of files) {
    for (const doc of parseYamlDocuments(file, issues)) {
      // Traffic-management resources may share a policy directory; policy/traffic/ validates those.
      if (isTrafficKind(doc.peekString('kind'))) continue;
      found.push(validateDocument(doc, options, issues));
    }
  }
  return accepted(found, issues);
}

/**
 * Validates policies received as plain objects (a config snapshot, Kubernetes custom resources).
 * `source` names where they came from; errors carry paths such as `[2].spec.rules[0].from`.
 */
export function validatePolicyObjects(objects: readonly unknown[], source: string, options: ValidationContext = {}): TrafficPermission[] {
  const issues = new ConfigIssues();
  const found: Located[] = [];
  objects.forEach((object, i) => {
    found.push(validateDocument(configNodeFromValue(object, source, `[${i}]`, issues), options, issues));
  });
  return accepted(found, issues);
}

/** All policies, or an InputError listing every issue (duplicates included) when there is any. */
function accepted(found: readonly Located[], issues: ConfigIssues): TrafficPermission[] {
  reportDuplicates(found, issues);
  issues.throwIfAny('policy');
  return found.map((f) => f.policy as TrafficPermission);
}

function reportDuplicates(found: readonly Located[], issues: ConfigIssues): void {
  const first = new Map<string, ConfigNode>();
  for (const { key, nameNode } of found) {
    if (key === undefined || nameNode === undefined) continue;
    const earlier = first.get(key);
    if (earlier === undefined) {
      first.set(key, nameNode);
      continue;
    }
    const at = earlier.line > 0 ? `${earlier.file}:${earlier.line}:${earlier.column}` : `${earlier.file} ${earlier.path}`;
    issues.add({
      file: nameNode.file,
      line: nameNode.line,
      column: nameNode.column,
      path: nameNode.path,
      message: `duplicate policy "${key}" (first defined at ${at})`,
    });
  }
}

const NOTHING: Located = Object.freeze({ policy: undefined, key: undefined, nameNode: undefined });

function validateDocument(doc: ConfigNode, options: ValidationContext, issues: ConfigIssues): Located {
  const before = issues.count;
  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const top = doc.object({ required: ['apiVersion', 'kind', 'metadata', 'spec'] });
  if (top === undefined) return NOTHING;
  const apiVersion = top.field('apiVersion')?.oneOf([POLICY_API_VERSION]);
  const kind = top.field('kind')?.oneOf([POLICY_KIND]);

  const metaNode = top.field('metadata');
  const meta = metaNode?.object({ required: ['name', 'namespace'], optional: ['labels', 'annotations'] });
  const nameNode = meta?.field('name');
  const name = nameNode?.string({ pattern: DNS_LABEL, expected: DNS_LABEL_HINT });
  const namespace = meta?.field('namespace')?.string({ pattern: DNS_LABEL, expected: DNS_LABEL_HINT });
  const labels = meta?.field('labels')?.stringMap();
  const annotations = meta?.field('annotations')?.stringMap();

  const spec = top.field('spec')?.object({ required: ['destination', 'rules'], optional: ['mode'] });
  const destinationNode = spec?.field('destination');
  const destinationText = destinationNode?.string({ maxLength: MAX_DESTINATION_LENGTH });
  let destination: { namespace: string; service: string } | undefined;
  if (destinationNode !== undefined && destinationText !== undefined && namespace !== undefined) {
    const parsed = parseDestination(destinationText, namespace, rootNamespace);
    if (parsed.ok) destination = parsed.value;
    else destinationNode.report(parsed.message);
  }
  const modeNode = spec?.field('mode');
  const mode = modeNode === undefined ? 'enforce' : modeNode.oneOf(MODES);

  const rules: PolicyRule[] = [];
  const ruleNodes = spec?.field('rules')?.list({ minItems: 1, maxItems: POLICY_LIMITS.rules }) ?? [];
  for (const ruleNode of ruleNodes) {
    const rule = validateRule(ruleNode, namespace, destination, options);
    if (rule !== undefined) rules.push(rule);
  }

  const key = name === undefined || namespace === undefined ? undefined : `${namespace}/${name}`;
  const named: Located = { policy: undefined, key, nameNode };
  if (issues.count > before || apiVersion === undefined || kind === undefined || name === undefined || namespace === undefined) return named;
  if (destinationText === undefined || mode === undefined) return named;
  const metadata = {
    name,
    namespace,
    ...(labels === undefined ? {} : { labels: Object.freeze(labels) }),
    ...(annotations === undefined ? {} : { annotations: Object.freeze(annotations) }),
  };
  const policy: TrafficPermission = {
    apiVersion,
    kind,
    metadata: Object.freeze(metadata),
    spec: Object.freeze({ destination: destinationText, mode, rules: Object.freeze(rules) }),
  };
  return { policy: Object.freeze(policy), key, nameNode };
}

function validateRule(
  node: ConfigNode,
  namespace: string | undefined,
  destination: { namespace: string; service: string } | undefined,
  options: ValidationContext,
): PolicyRule | undefined {
  const rule = node.object({ required: ['action', 'from'], optional: ['http', 'grpc'] });
  if (rule === undefined) return undefined;
  const action = rule.field('action')?.oneOf(ACTIONS);
  const from: string[] = [];
  let fromOk = true;
  for (const entry of rule.field('from')?.list({ minItems: 1, maxItems: POLICY_LIMITS.fromEntries }) ?? []) {
    const text = entry.string({ maxLength: MAX_DESTINATION_LENGTH });
    if (text === undefined) {
      fromOk = false;
      continue;
    }
    // The namespace is needed to resolve a bare service name; without one the document already has an error.
    const parsed = parseSourceSelector(text, namespace ?? 'default');
    if (parsed.ok) from.push(text);
    else {
      entry.report(parsed.message);
      fromOk = false;
    }
  }
  const httpNode = rule.field('http');
  const http = httpNode === undefined ? undefined : validateHttp(httpNode);
  const grpcNode = rule.field('grpc');
  const grpc = grpcNode === undefined ? undefined : validateGrpc(grpcNode);
  const conditionsNode = httpNode ?? grpcNode;
  if (conditionsNode !== undefined && destination !== undefined && destination.service !== ANY && options.portProtocols !== undefined) {
    const protocols = options.portProtocols(destination.namespace, destination.service);
    if (protocols !== undefined && protocols.size > 0 && [...protocols].every((p) => p === 'tcp')) {
      conditionsNode.report(
        `${httpNode === undefined ? 'gRPC' : 'HTTP'} conditions, but every port of ${destination.namespace}/${destination.service} is TCP: ` +
          (action === 'deny' ? 'this deny rule would deny every stream' : 'this allow rule would never match'),
      );
    }
  }
  if (action === undefined || !fromOk || rule.field('from') === undefined || (httpNode !== undefined && http === undefined) || (grpcNode !== undefined && grpc === undefined)) return undefined;
  const out: PolicyRule = { action, from: Object.freeze(from), ...(http === undefined ? {} : { http }), ...(grpc === undefined ? {} : { grpc }) };
  return Object.freeze(out);
}

function validateHttp(node: ConfigNode): HttpConditions | undefined {
  const http = node.object({ optional: ['methods', 'paths'] });
  if (http === undefined) return undefined;
  const methodsNode = http.field('methods');
  const pathsNode = http.field('paths');
  if (methodsNode === undefined && pathsNode === undefined) {
    return node.report('expected "methods", "paths" or both (leave "http" out to match any request)');
  }
  let ok = true;
  const methods: string[] = [];
  for (const m of methodsNode?.list({ minItems: 1, maxItems: POLICY_LIMITS.methods }) ?? []) {
    const text = m.string();
    if (text === undefined) ok = false;
    else if (!METHOD_PATTERN.test(text)) {
      const hint = METHOD_PATTERN.test(text.toUpperCase()) ? ` (methods are case-sensitive: write "${text.toUpperCase()}")` : '';
      m.report(`expected an uppercase HTTP method such as GET or POST, got ${JSON.stringify(text)}${hint}`);
      ok = false;
    } else methods.push(text);
  }
  const paths: string[] = [];
  for (const p of pathsNode?.list({ minItems: 1, maxItems: POLICY_LIMITS.paths }) ?? []) {
    const text = p.string();
    if (text === undefined) {
      ok = false;
      continue;
    }
    const problem = pathPatternProblem(text);
    if (problem === undefined) paths.push(text);
    else {
      p.report(problem);
      ok = false;
    }
  }
  if (!ok || (methodsNode !== undefined && methods.length === 0) || (pathsNode !== undefined && paths.length === 0)) return undefined;
  return Object.freeze({
    ...(methodsNode === undefined ? {} : { methods: Object.freeze(methods) }),
    ...(pathsNode === undefined ? {} : { paths: Object.freeze(paths) }),
  });
}
