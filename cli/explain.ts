/**
 * `trellis explain`: may service A call service B (with this method and path), and which rule decides?
 * Loads a policy directory exactly as the control plane would, evaluates one request with the same
 * compiled evaluator the proxy runs, and prints the decision, the deciding policy and the rule's text.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseTrustDomain, parseWorkloadId } from '../ca/spiffe-id.js';
import { InputError } from '../common/errors.js';
import { readConfigFile, type YamlText } from '../common/yaml-source.js';
import {
  DEFAULT_ROOT_NAMESPACE,
  compilePolicy,
  isPolicyFileName,
  parsePolicyFiles,
  type AuthorizationRequest,
  type Decision,
  type TrafficPermission,
} from '../policy/index.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { EXIT_OK, type Command, type CommandContext } from './command.js';
import { REQUIRED, formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { CONTROL_DEFAULTS } from '../control/config.js';
import { CODE } from '../common/error-codes.js';
import { explainTraffic, parseHeaderFlags, renderTraffic } from './explain-traffic.js';
import { explainGatewayRoute } from './explain-gateway.js';
import { explainZones, renderZones } from './explain-zones.js';
import { compileTraffic, parseTrafficFiles } from '../policy/traffic/index.js';

/** With --exit-code a denial exits 3, apart from 1 (failure) and 2 (bad input), like `git diff --exit-code`. */
export const EXIT_DENIED = 3;

const SPEC = {
  usage: `trellis explain --policy DIR|FILE --from NS/SERVICE|SPIFFE-ID --to NS/SERVICE [--from-zone ZONE] [--admin URL]
                       [--method METHOD --path PATH] [--header NAME=VALUE]... [--trust-domain TD] [--root-namespace NS] [--json] [--exit-code]
       trellis explain --policy DIR|FILE --gateway FILE --host HOST --path PATH [--method METHOD] [--listener NAME] [--header NAME=VALUE]...`,
  about: `Answers whether a caller may reach a service under the given policies, and names the deciding rule.
Without --method and --path the question is about a TCP stream; with them, about one HTTP request.
A caller whose SPIFFE ID is in another trust domain than the mesh's is denied, as the proxy denies it.
The answer also shows traffic management for the destination: the TrafficRoute rule that matches and its
backend weights, and the timeouts, retry policy, outlier detection and circuit breaker in force.
--from-zone puts the caller in a zone (rules naming zones, "east/shop/orders", then apply) and names the
ZoneFailover it follows; with --admin (a zone control plane's admin address) it also says which zone
would serve the call, and in what order the zones would be tried, as the caller's balancer would.`,
  flags: {
    gateway: { type: 'string', value: 'FILE', help: "a gateway's config: name the route that serves --host and --path, then judge\nthe gateway's identity calling that route's service (instead of --from, --to)", whenAbsent: 'none' },
    host: { type: 'string', value: 'HOST', help: 'with --gateway: the request host', whenAbsent: 'required with --gateway' },
    listener: { type: 'string', value: 'NAME', help: "with --gateway: the listener the request arrives on", whenAbsent: "the config's first" },
    policy: { type: 'string', value: 'DIR|FILE', help: 'policy files (*.yaml, *.yml), validated as the control plane would', whenAbsent: REQUIRED },
    from: { type: 'string', value: 'CALLER', help: 'the caller: namespace/service, or its SPIFFE ID spiffe://TD/ns/NS/sa/SERVICE', whenAbsent: REQUIRED },
    to: { type: 'string', value: 'NS/SERVICE', help: 'the destination service', whenAbsent: REQUIRED },
    method: { type: 'string', value: 'METHOD', help: 'an HTTP request: its method (with --path)', whenAbsent: 'a TCP stream' },
    path: { type: 'string', value: 'PATH', help: 'an HTTP request: its path (with --method)', whenAbsent: 'a TCP stream' },
    'from-zone': { type: 'string', value: 'ZONE', help: "the caller's zone, as its certificate proves it", whenAbsent: 'unknown (only rules naming no zone match)' },
    admin: { type: 'string', value: 'URL', help: "a zone control plane's admin address: say which zone would serve the call", whenAbsent: 'not asked' },
    header: { type: 'string', multiple: true, value: 'NAME=VALUE', help: 'an HTTP request header, for route matches; repeatable', whenAbsent: 'none' },
    'trust-domain': { type: 'string', value: 'TD', help: "the mesh's trust domain (as trellis control run --trust-domain);\na caller from another one never matches", whenAbsent: CONTROL_DEFAULTS.trustDomain },
    'root-namespace': { type: 'string', value: 'NS', help: "the mesh's root namespace", whenAbsent: DEFAULT_ROOT_NAMESPACE },
    json: { type: 'boolean', help: 'print the decision as JSON', whenAbsent: 'off' },
    'exit-code': { type: 'boolean', help: `exit ${EXIT_DENIED} when the request would be denied (0 when allowed)`, whenAbsent: 'off' },
  },
  footer: 'Exit status: 0 with the decision printed (allow or deny), 2 for bad input or invalid policy.',
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);

function parseService(text: string, flag: string): { namespace: string; service: string } {
  const parts = text.split('/');
  if (parts.length !== 2 || !DNS_LABEL.test(parts[0] as string) || !DNS_LABEL.test(parts[1] as string)) {
    throw new InputError(CODE.CLI_USAGE, `${flag}: expected namespace/service (DNS labels), got "${text}"`);
  }
  return { namespace: parts[0] as string, service: parts[1] as string };
}

function parseCaller(text: string): { trustDomain: string | null; namespace: string; service: string } {
  if (text.startsWith('spiffe://')) {
    const id = parseWorkloadId(text);
    return { trustDomain: id.trustDomain, namespace: id.namespace, service: id.service };
  }
  return { trustDomain: null, ...parseService(text, '--from') };
}

/** Policies and, for each, the file it came from (validated together first, so the set is exactly what would load). */
async function loadPolicies(path: string, rootNamespace: string): Promise<{ policies: TrafficPermission[]; origin: Map<string, string>; files: YamlText[] }> {
  const stat = await fs.stat(path).catch((err: unknown) => {
    throw new InputError(CODE.POLICY_DIR_UNREADABLE, `--policy ${path}: ${(err as Error).message}`, { cause: err });
  });
  const names = stat.isDirectory() ? (await fs.readdir(path)).filter(isPolicyFileName).sort().map((n) => join(path, n)) : [path];
  const files: YamlText[] = [];
  for (const name of names) files.push(await readConfigFile(name));
  const policies = parsePolicyFiles(files, { rootNamespace });
  // The set is valid as a whole, so each file is valid on its own: parse again per file to know where each policy lives.
  const origin = new Map<string, string>();
  for (const file of files) for (const p of parsePolicyFiles([file], { rootNamespace })) origin.set(key(p), file.path);
  return { policies, origin, files };
}

function key(p: TrafficPermission): string {
  return `${p.metadata.namespace}/${p.metadata.name}`;
}

function indent(text: string, by: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `${by}${l}`)
    .join('\n');
}

interface Explained {
  readonly decision: Decision;
  readonly req: AuthorizationRequest;
  readonly callerText: string;
  readonly policies: readonly TrafficPermission[];
  readonly applicable: readonly TrafficPermission[];
  readonly origin: ReadonlyMap<string, string>;
}

function render({ decision, req, callerText, policies, applicable, origin }: Explained): string {
  const what = req.http === undefined ? 'TCP stream' : `HTTP ${req.http.method} ${req.http.path}`;
  const verdict = decision.allowed ? (decision.enforced ? 'ALLOW' : 'ALLOW (dry-run policy would deny; not enforced)') : 'DENY';
  const lines = [`${verdict}: ${callerText} -> ${req.destination.namespace}/${req.destination.service} (${what})`, `  ${decision.reason}`];
  const policy = decision.policy === null ? undefined : policies.find((p) => key(p) === decision.policy);
  const rule = decision.rule === null ? undefined : policy?.spec.rules[decision.rule];
  if (policy !== undefined && rule !== undefined && decision.rule !== null) {
    lines.push('', `policy ${key(policy)} in ${origin.get(key(policy)) ?? '?'} (destination "${policy.spec.destination}", mode ${policy.spec.mode}), rule ${decision.rule}:`);
    lines.push(indent(stringify([rule]), '  '));
  } else if (applicable.length === 0) {
    lines.push('', `no policy names ${req.destination.namespace}/${req.destination.service} as its destination`);
  } else {
    lines.push('', `policies for this destination (none has a rule that allows this caller):`);
    for (const p of applicable) lines.push(`  ${key(p)} in ${origin.get(key(p)) ?? '?'} (destination "${p.spec.destination}", mode ${p.spec.mode}, ${p.spec.rules.length === 1 ? '1 rule' : `${p.spec.rules.length} rules`})`);
  }
  return `${lines.join('\n')}\n`;
}

async function explain(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const parsed = parseFlags(SPEC, argv);
  const { positionals } = parsed;
  const values = { ...parsed.values };
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${USAGE}`);
  if (values.gateway !== undefined) {
    if (values.host === undefined || values.path === undefined) throw new InputError(CODE.CLI_USAGE, `--gateway needs --host and --path\n\n${USAGE}`);
    if (values.from !== undefined || values.to !== undefined) throw new InputError(CODE.CLI_USAGE, '--gateway names the caller and the destination itself: leave out --from and --to');
    const method = values.method ?? 'GET';
    const gw = await explainGatewayRoute(values.gateway, { host: values.host, path: values.path, method, headers: parseHeaderFlags(values.header ?? []), listener: values.listener });
    if (gw.question === undefined) {
      ctx.stdout.write(values.json === true ? `${JSON.stringify({ gateway: gw })}\n` : gw.text);
      return values['exit-code'] === true && gw.route === null ? EXIT_DENIED : EXIT_OK;
    }
    if (values.json !== true) ctx.stdout.write(gw.text);
    Object.assign(values, { from: gw.question.from, to: gw.question.to, method, path: gw.question.path });
  }
  for (const flag of ['policy', 'from', 'to'] as const) {
    if (values[flag] === undefined) throw new InputError(CODE.CLI_USAGE, `--${flag} is required\n\n${USAGE}`);
  }
  if ((values.method === undefined) !== (values.path === undefined)) {
    throw new InputError(CODE.CLI_USAGE, '--method and --path go together: give both for an HTTP request, neither for a TCP stream');
  }
  const rootNamespace = values['root-namespace'] ?? DEFAULT_ROOT_NAMESPACE;
  if (!DNS_LABEL.test(rootNamespace)) throw new InputError(CODE.CLI_USAGE, `--root-namespace: "${rootNamespace}" is not a DNS label`);
  const caller = parseCaller(values.from as string);
  const destination = parseService(values.to as string, '--to');
  // The mesh's trust domain is never taken from the caller: a caller from another one must be denied.
  const trustDomain = parseTrustDomain(values['trust-domain'] ?? CONTROL_DEFAULTS.trustDomain);
  const fromZone = values['from-zone'];
  if (fromZone !== undefined && !DNS_LABEL.test(fromZone)) throw new InputError(CODE.CLI_USAGE, `--from-zone: "${fromZone}" is not a zone name (a DNS label)`);
  const source = { trustDomain: caller.trustDomain ?? trustDomain, namespace: caller.namespace, service: caller.service, ...(fromZone === undefined ? {} : { zone: fromZone }) };
  const http = values.method === undefined ? undefined : { method: values.method, path: values.path as string };
  const req: AuthorizationRequest = { source, destination, protocol: http === undefined ? 'tcp' : 'http', ...(http === undefined ? {} : { http }) };

  const headers = parseHeaderFlags(values.header ?? []);
  const { policies, origin, files } = await loadPolicies(values.policy as string, rootNamespace);
  const compiled = compilePolicy(policies, { trustDomain, rootNamespace });
  const decision = compiled.evaluate(req);
  const table = compileTraffic(parseTrafficFiles(files), { rootNamespace });
  const traffic = explainTraffic(table, destination, http, headers, fromZone);
  const zones = values.admin === undefined ? undefined : await explainZones(values.admin, destination, fromZone, (zone) => table.failover.resolve(zone, destination.namespace, destination.service));
  if (values.json === true) {
    const policy = decision.policy === null ? undefined : policies.find((p) => key(p) === decision.policy);
    const rule = decision.rule === null ? null : (policy?.spec.rules[decision.rule] ?? null);
    ctx.stdout.write(`${JSON.stringify({ request: req, decision, rule, traffic, ...(zones === undefined ? {} : { zones }) })}\n`);
  } else {
    const callerText = fromZone === undefined ? (values.from as string) : `${values.from as string} (zone ${fromZone})`;
    ctx.stdout.write(render({ decision, req, callerText, policies: compiled.policies, applicable: compiled.policiesFor(destination), origin }));
    ctx.stdout.write(renderTraffic(traffic));
    if (zones !== undefined) ctx.stdout.write(renderZones(zones));
  }
  return values['exit-code'] === true && !decision.allowed ? EXIT_DENIED : EXIT_OK;
}

export const explainCommand: Command = {
  name: 'explain',
  usage: USAGE,
  forms: { '': SPEC },
  run: explain,
};
