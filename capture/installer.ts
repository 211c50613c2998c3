/**
 * Installs, removes and shows the traffic redirect in the nat table, for IPv4 and (when asked) IPv6.
 *
 * Each family changes in one iptables-restore --noflush transaction that touches only our chains and the
 * jumps into them, so a failure leaves that family exactly as it was. The two families cannot share one
 * transaction; when IPv6 fails after IPv4 succeeded, IPv4 is put back to what it was before, so an install
 * never leaves half a redirect. Installing again replaces our rules (changed options take effect, nothing
 * is duplicated); uninstalling removes every chain named TRELLIS_* and every jump into one, and nothing else.
 */
import { TrellisError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { CommandRunner } from './command-runner.js';
import { detectBackend, type BackendKind, type IptablesBackend } from './backend.js';
import { parseNatState, reconcileTransaction, sameRuleSet, type InstalledNatState } from './nat-state.js';
import type { RedirectConfig } from './options.js';
import { buildNatRules, type AddressFamily, type NatRuleSet } from './rules.js';
import { CODE } from '../common/error-codes.js';

export interface FamilyState {
  readonly family: AddressFamily;
  /** false when this family's iptables is unusable here (e.g. no IPv6 in the kernel); `problem` says why. */
  readonly available: boolean;
  readonly problem?: string;
  readonly state: InstalledNatState;
}

export interface RedirectStatus {
  readonly backend: BackendKind;
  readonly backendReason: string;
  readonly where: string;
  readonly families: readonly FamilyState[];
}

export interface InstallResult {
  readonly backend: BackendKind;
  /** Families whose rules were (re)written. */
  readonly families: readonly AddressFamily[];
  /** Families that already held exactly these rules; rewritten anyway (cheap and atomic), reported for logs. */
  readonly unchanged: readonly AddressFamily[];
}

export interface UninstallResult {
  readonly backend: BackendKind;
  /** Families from which rules of ours were removed. */
  readonly removed: readonly AddressFamily[];
}

export interface RedirectInstallerOptions {
  readonly runner: CommandRunner;
  /** Skip detection and use this backend (the operator's --backend). */
  readonly backend?: BackendKind;
  readonly log?: Logger;
}

export interface RedirectInstaller {
  install(config: RedirectConfig): Promise<InstallResult>;
  uninstall(): Promise<UninstallResult>;
  status(): Promise<RedirectStatus>;
}

const EMPTY_STATE: InstalledNatState = Object.freeze({ chains: [], rules: [], jumps: [], installed: false });
/** Seconds iptables-restore waits for the xtables lock held by another writer (kube-proxy, firewalld). */
const LOCK_WAIT_SECONDS = '10';

function tool(backend: IptablesBackend, family: AddressFamily): string {
  return `${family === 4 ? 'iptables' : 'ip6tables'} (${backend.kind})`;
}

/** What every step of an installer works with: where commands run, the backend (detected once), the log. */
interface InstallerContext {
  readonly runner: RedirectInstallerOptions['runner'];
  readonly backend: () => Promise<IptablesBackend>;
  readonly log: RedirectInstallerOptions['log'];
}

export function createRedirectInstaller(options: RedirectInstallerOptions): RedirectInstaller {
  const { runner } = options;
  let detected: Promise<IptablesBackend> | undefined;
  const ctx: InstallerContext = { runner, backend: () => (detected ??= detectBackend(runner, options.backend)), log: options.log };
  return Object.freeze({
    install: (config: RedirectConfig) => install(ctx, config),
    uninstall: () => uninstall(ctx),
    status: () => status(ctx),
  });
}

async function read({ runner }: InstallerContext, backend: IptablesBackend, family: AddressFamily): Promise<InstalledNatState> {
  const result = await runner.run(backend.save(family), ['-t', 'nat']);
  if (result.code !== 0) {
    throw new TrellisError(CODE.REDIRECT_READ_FAILED, `${backend.save(family)} -t nat failed on ${runner.where}: ${result.stderr.trim() || `exit ${result.code}`}`, {
      details: { family, code: result.code },
    });
  }
  return parseNatState(result.stdout);
}

async function apply({ runner }: InstallerContext, backend: IptablesBackend, family: AddressFamily, transaction: string): Promise<void> {
  const result = await runner.run(backend.restore(family), ['--noflush', '-w', LOCK_WAIT_SECONDS], transaction);
  if (result.code !== 0) {
    throw new TrellisError(
      CODE.REDIRECT_APPLY_FAILED,
      `${backend.restore(family)} refused the ${tool(backend, family)} rules on ${runner.where}, nothing was changed for IPv${family}: ${result.stderr.trim() || `exit ${result.code}`}`,
      { details: { family, code: result.code } },
    );
  }
}

async function install(ctx: InstallerContext, config: RedirectConfig): Promise<InstallResult> {
  const backend = await ctx.backend();
  const families: AddressFamily[] = config.ipv6 ? [4, 6] : [4];
  const before = new Map<AddressFamily, InstalledNatState>();
  for (const family of families) before.set(family, await read(ctx, backend, family));
  const unchanged: AddressFamily[] = [];
  const done: AddressFamily[] = [];
  try {
    for (const family of families) {
      const current = before.get(family) ?? EMPTY_STATE;
      const desired = buildNatRules(config, family);
      if (current.installed && sameRuleSet(current, desired)) unchanged.push(family);
      await apply(ctx, backend, family, reconcileTransaction(current, desired));
      done.push(family);
      const after = await read(ctx, backend, family);
      if (!sameRuleSet(after, desired)) {
        ctx.log?.warn({ family, installed: after.rules, expected: desired.rules }, 'installed redirect rules read back differently from the generated ones');
      }
    }
  } catch (err) {
    await rollBack(ctx, backend, done, before, err);
    throw err;
  }
  ctx.log?.info({ backend: backend.kind, families, where: ctx.runner.where }, 'traffic redirect installed');
  return Object.freeze({ backend: backend.kind, families, unchanged });
}

/** Puts families already changed back to their state before this install. */
async function rollBack(ctx: InstallerContext, backend: IptablesBackend, done: readonly AddressFamily[], before: ReadonlyMap<AddressFamily, InstalledNatState>, cause: unknown): Promise<void> {
  for (const family of done) {
    const previous = before.get(family) ?? EMPTY_STATE;
    const restoreTo: NatRuleSet | null = previous.installed ? previous : null;
    try {
      await apply(ctx, backend, family, reconcileTransaction(await read(ctx, backend, family), restoreTo));
    } catch (err) {
      throw new TrellisError(
        CODE.REDIRECT_ROLLBACK_FAILED,
        `installing the redirect failed (${(cause as Error).message}) and IPv${family} could not be put back: ${(err as Error).message}; run \`trellis agent redirect uninstall\``,
        { cause },
      );
    }
  }
}

async function familyState(ctx: InstallerContext, backend: IptablesBackend, family: AddressFamily): Promise<FamilyState> {
  try {
    return { family, available: true, state: await read(ctx, backend, family) };
  } catch (err) {
    // IPv6 may be missing entirely (kernel without ip6_tables, or ip6tables not installed): say so, do not fail.
    if (family === 6) return { family, available: false, problem: (err as Error).message, state: EMPTY_STATE };
    throw err;
  }
}

async function uninstall(ctx: InstallerContext): Promise<UninstallResult> {
  const backend = await ctx.backend();
  const removed: AddressFamily[] = [];
  for (const family of [4, 6] as const) {
    const { available, state } = await familyState(ctx, backend, family);
    if (!available || !state.installed) continue;
    await apply(ctx, backend, family, reconcileTransaction(state, null));
    removed.push(family);
  }
  ctx.log?.info({ backend: backend.kind, removed, where: ctx.runner.where }, removed.length > 0 ? 'traffic redirect removed' : 'no traffic redirect was installed');
  return Object.freeze({ backend: backend.kind, removed });
}

async function status(ctx: InstallerContext): Promise<RedirectStatus> {
  const backend = await ctx.backend();
  const families = [await familyState(ctx, backend, 4), await familyState(ctx, backend, 6)];
  return Object.freeze({ backend: backend.kind, backendReason: backend.reason, where: ctx.runner.where, families });
}

/** `trellis agent redirect show`: what is installed, as iptables-save lines per family. */
export function formatStatus(status: RedirectStatus): string {
  const lines = [`iptables backend: ${status.backend} (${status.backendReason}), on ${status.where}`];
  for (const { family, available, problem, state } of status.families) {
    const name = `IPv${family} (${family === 4 ? 'iptables' : 'ip6tables'})`;
    if (!available) {
      lines.push(`${name}: unavailable: ${problem ?? 'unknown reason'}`);
      continue;
    }
    if (!state.installed) {
      lines.push(`${name}: not installed`);
      continue;
    }
    lines.push(`${name}: installed (chains ${state.chains.join(', ')})`, ...state.jumps.map((l) => `  ${l}`), ...state.rules.map((l) => `  ${l}`));
  }
  return `${lines.join('\n')}\n`;
}
