/**
 * Reading what is installed (`iptables-save -t nat`) and writing the one iptables-restore transaction that
 * turns it into what we want.
 *
 * Everything of ours is recognised by name: chains called TRELLIS_*, and rules in other chains that jump
 * to one of them. Uninstalling therefore removes exactly what an install added and nothing an operator or
 * another tool wrote, and installing twice replaces rather than duplicates. Deletions reuse the exact text
 * iptables-save printed, so they match whatever the backend normalised.
 */
import { CHAIN_PREFIX, type NatRuleSet } from './rules.js';

export interface InstalledNatState extends NatRuleSet {
  /** True when the nat table holds any chain or jump of ours. */
  readonly installed: boolean;
}

const JUMP_TO_OURS = new RegExp(String.raw`(?:^| )-[jg] (${CHAIN_PREFIX}[A-Za-z0-9_-]+)(?: |$)`);

/** Our chains, their rules and the jumps into them, from iptables-save output (only the *nat section is read). */
export function parseNatState(saveOutput: string): InstalledNatState {
  const chains: string[] = [];
  const rules: string[] = [];
  const jumps: string[] = [];
  let inNat = false;
  for (const raw of saveOutput.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      inNat = line === '*nat';
      continue;
    }
    if (!inNat || line === '' || line.startsWith('#')) continue;
    if (line === 'COMMIT') {
      inNat = false;
      continue;
    }
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      if (name.startsWith(CHAIN_PREFIX)) chains.push(name);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const chain = line.split(' ')[1] ?? '';
    if (chain.startsWith(CHAIN_PREFIX)) rules.push(line);
    else if (JUMP_TO_OURS.test(line)) jumps.push(line);
  }
  return Object.freeze({ chains, rules, jumps, installed: chains.length > 0 || jumps.length > 0 });
}

/**
 * The iptables-restore --noflush input that replaces `current` (ours only) with `desired`; null desired
 * removes everything of ours. Order matters inside the transaction: old jumps go first (a chain cannot be
 * deleted while referenced), declaring a chain that exists flushes it, and stale chains are flushed before
 * any is deleted because our chains may jump to each other.
 */
export function reconcileTransaction(current: InstalledNatState, desired: NatRuleSet | null): string {
  const lines = ['*nat'];
  for (const jump of current.jumps) lines.push(`-D${jump.slice(2)}`);
  const keep = new Set(desired?.chains ?? []);
  for (const chain of desired?.chains ?? []) lines.push(`:${chain} - [0:0]`);
  const stale = current.chains.filter((chain) => !keep.has(chain));
  for (const chain of stale) lines.push(`-F ${chain}`);
  for (const chain of stale) lines.push(`-X ${chain}`);
  if (desired !== null) lines.push(...desired.rules, ...desired.jumps);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Whether the installed rules of ours are exactly the desired ones: same chains, and the same rules in each chain in order. */
export function sameRuleSet(installed: NatRuleSet, desired: NatRuleSet): boolean {
  return fingerprint(installed) === fingerprint(desired);
}

/** Chain by chain, because iptables-save orders chains its own way (built-in first, then by name). */
function fingerprint(ruleSet: NatRuleSet): string {
  const byChain = new Map<string, string[]>();
  for (const chain of ruleSet.chains) byChain.set(chain, []);
  for (const line of [...ruleSet.rules, ...ruleSet.jumps]) {
    const chain = line.split(' ')[1] ?? '';
    const list = byChain.get(chain) ?? [];
    list.push(line);
    byChain.set(chain, list);
  }
  return [...byChain.keys()]
    .sort()
    .map((chain) => `${chain}\n${(byChain.get(chain) ?? []).join('\n')}`)
    .join('\n\n');
}
