/**
 * The nat-table rules that send a workload's TCP traffic through its sidecar, for one address family.
 *
 *   PREROUTING ─(tcp to a local address)─▶ TRELLIS_INBOUND ─▶ TRELLIS_IN_REDIRECT  (REDIRECT → inbound 15006)
 *   OUTPUT ─(tcp)─▶ TRELLIS_OUTPUT ─┬─▶ TRELLIS_IN_REDIRECT  the proxy dialling this workload's own address
 *                                   └─▶ TRELLIS_REDIRECT     everything else the app dials (REDIRECT → 15001)
 *
 * TRELLIS_OUTPUT, in order (the first match decides, so the order is the design):
 *  1. excluded destination ports (tunnel, admin, SSH, configured) return first: nothing below may capture them;
 *  2. the inbound hand-off source (127.0.0.6 / ::6) over lo returns: the sidecar giving a connection to an app
 *     that listens only on the workload's own address must not be captured again;
 *  3. the proxy's own connections over lo to a non-loopback address go to inbound capture: an app calling its
 *     own service goes app → outbound sidecar → (own address) → inbound sidecar → app, with policy on the way;
 *  4. every other connection of the proxy (by uid, then gid) returns: this is what stops the endless loop;
 *  5. any remaining traffic over lo is the app talking to itself or to localhost: left alone;
 *  6. excluded destination ranges return; 7. everything else is redirected to the outbound port.
 * Rules are written in exactly the form iptables-save prints them, so installed and generated rules compare
 * line by line.
 */
import type { RedirectConfig } from './options.js';
import { INBOUND_HANDOFF_SOURCE_V4, INBOUND_HANDOFF_SOURCE_V6, SSH_PORT } from './options.js';
import type { PortRange } from './cidr.js';

export type AddressFamily = 4 | 6;

export const CHAIN_PREFIX = 'TRELLIS_';
export const INBOUND_CHAIN = 'TRELLIS_INBOUND';
export const IN_REDIRECT_CHAIN = 'TRELLIS_IN_REDIRECT';
export const OUTPUT_CHAIN = 'TRELLIS_OUTPUT';
export const REDIRECT_CHAIN = 'TRELLIS_REDIRECT';

/** Our part of one family's nat table: chains (in declaration order), their rules, and the jumps into them. */
export interface NatRuleSet {
  readonly chains: readonly string[];
  /** `-A TRELLIS_... ...` lines, in order. */
  readonly rules: readonly string[];
  /** `-A PREROUTING ...` / `-A OUTPUT ...` lines that lead into our chains. */
  readonly jumps: readonly string[];
}

interface RuleSpec {
  readonly source?: string;
  readonly notDestination?: string;
  readonly destination?: string;
  readonly outInterface?: string;
  readonly tcp?: boolean;
  readonly destinationPort?: PortRange;
  readonly matches?: readonly string[];
  readonly jump: string;
}

/** One rule in iptables-save's own option order: addresses, interfaces, protocol, matches, target. */
function rule(chain: string, spec: RuleSpec): string {
  const parts = [`-A ${chain}`];
  if (spec.source !== undefined) parts.push(`-s ${spec.source}`);
  if (spec.notDestination !== undefined) parts.push(`! -d ${spec.notDestination}`);
  if (spec.destination !== undefined) parts.push(`-d ${spec.destination}`);
  if (spec.outInterface !== undefined) parts.push(`-o ${spec.outInterface}`);
  if (spec.tcp === true || spec.destinationPort !== undefined) parts.push('-p tcp');
  if (spec.destinationPort !== undefined) parts.push(`-m tcp --dport ${spec.destinationPort.text}`);
  for (const match of spec.matches ?? []) parts.push(match);
  parts.push(`-j ${spec.jump}`);
  return parts.join(' ');
}

function single(port: number): PortRange {
  return { from: port, to: port, text: String(port) };
}

/** Ports excluded in both directions, in a stable order: tunnel, admin, SSH, then the configured ones. */
function excludedPorts(config: RedirectConfig, configured: readonly PortRange[]): PortRange[] {
  const list = [single(config.tunnelPort), single(config.adminPort)];
  if (config.excludeSsh) list.push(single(SSH_PORT));
  const seen = new Set(list.map((p) => p.text));
  for (const p of configured) {
    if (!seen.has(p.text)) {
      seen.add(p.text);
      list.push(p);
    }
  }
  return list;
}

export function buildNatRules(config: RedirectConfig, family: AddressFamily): NatRuleSet {
  const loopback = family === 4 ? '127.0.0.0/8' : '::1/128';
  const handoffSource = family === 4 ? `${INBOUND_HANDOFF_SOURCE_V4}/32` : `${INBOUND_HANDOFF_SOURCE_V6}/128`;
  const rules: string[] = [];

  for (const port of excludedPorts(config, config.excludeInboundPorts)) rules.push(rule(INBOUND_CHAIN, { destinationPort: port, jump: 'RETURN' }));
  for (const cidr of config.excludeInboundCidrs) if (cidr.family === family) rules.push(rule(INBOUND_CHAIN, { source: cidr.text, jump: 'RETURN' }));
  rules.push(rule(INBOUND_CHAIN, { tcp: true, jump: IN_REDIRECT_CHAIN }));

  rules.push(rule(IN_REDIRECT_CHAIN, { tcp: true, jump: `REDIRECT --to-ports ${config.inboundPort}` }));

  for (const port of excludedPorts(config, config.excludeOutboundPorts)) rules.push(rule(OUTPUT_CHAIN, { destinationPort: port, jump: 'RETURN' }));
  rules.push(rule(OUTPUT_CHAIN, { source: handoffSource, outInterface: 'lo', jump: 'RETURN' }));
  const owners = [...config.proxyUids.map((id) => `--uid-owner ${id}`), ...config.proxyGids.map((id) => `--gid-owner ${id}`)];
  for (const owner of owners) {
    rules.push(rule(OUTPUT_CHAIN, { notDestination: loopback, outInterface: 'lo', tcp: true, matches: [`-m owner ${owner}`], jump: IN_REDIRECT_CHAIN }));
  }
  for (const owner of owners) rules.push(rule(OUTPUT_CHAIN, { matches: [`-m owner ${owner}`], jump: 'RETURN' }));
  rules.push(rule(OUTPUT_CHAIN, { outInterface: 'lo', jump: 'RETURN' }));
  for (const cidr of config.excludeOutboundCidrs) if (cidr.family === family) rules.push(rule(OUTPUT_CHAIN, { destination: cidr.text, jump: 'RETURN' }));
  rules.push(rule(OUTPUT_CHAIN, { jump: REDIRECT_CHAIN }));

  rules.push(rule(REDIRECT_CHAIN, { tcp: true, jump: `REDIRECT --to-ports ${config.outboundPort}` }));

  const jumps = [
    // Only connections addressed to this host: on a VM that routes for containers, forwarded traffic passes
    // PREROUTING too and must not be captured as if it were inbound to the workload.
    rule('PREROUTING', { tcp: true, matches: ['-m addrtype --dst-type LOCAL'], jump: INBOUND_CHAIN }),
    rule('OUTPUT', { tcp: true, jump: OUTPUT_CHAIN }),
  ];
  return Object.freeze({
    chains: Object.freeze([INBOUND_CHAIN, IN_REDIRECT_CHAIN, OUTPUT_CHAIN, REDIRECT_CHAIN]),
    rules: Object.freeze(rules),
    jumps: Object.freeze(jumps),
  });
}

/** The rule set as an iptables-restore file (what `--dry-run` prints and the golden files hold). */
export function renderRuleSet(ruleSet: NatRuleSet, family: AddressFamily): string {
  const tool = family === 4 ? 'iptables' : 'ip6tables';
  return [
    `# Trellis transparent capture, IPv${family} nat rules (${tool}-restore format); \`trellis agent redirect install\` applies them atomically, replacing any earlier install`,
    '*nat',
    ...ruleSet.chains.map((chain) => `:${chain} - [0:0]`),
    ...ruleSet.rules,
    ...ruleSet.jumps,
    'COMMIT',
    '',
  ].join('\n');
}
