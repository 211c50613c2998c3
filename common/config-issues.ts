/**
 * The problems found in a config file, collected so an operator fixes a whole file in one pass.
 *
 * Validators record every problem in one `ConfigIssues` list instead of stopping at the first; the list is
 * then thrown as a single `TRELLIS_CONFIG_INVALID` InputError whose message names each file, line and column,
 * and whose details carry the issues for callers that report them their own way (`configIssuesOf`).
 */
import { InputError } from './errors.js';
import { CODE } from './error-codes.js';

export const CONFIG_UNREADABLE = CODE.CONFIG_UNREADABLE;
export const CONFIG_INVALID = CODE.CONFIG_INVALID;

/** One problem in a config file. `line` and `column` are 1-based; 0 when the value had no source position. */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** Where in the document: `spec.rules[0].from[1]`; empty for the document itself. */
  readonly path: string;
  readonly message: string;
}

/** `file:line:column: path: message`, the form editors and CI annotations jump to. */
export function formatConfigIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

/** Collects every issue of a validation pass, then throws them together as one InputError. */
export class ConfigIssues {
  private readonly list: ConfigIssue[] = [];

  add(issue: ConfigIssue): void {
    this.list.push(Object.freeze({ ...issue }));
  }

  get count(): number {
    return this.list.length;
  }

  all(): readonly ConfigIssue[] {
    return this.list.slice();
  }

  /** Throws `TRELLIS_CONFIG_INVALID` listing every issue when there is any; `what` names the config ("policy"). */
  throwIfAny(what: string): void {
    if (this.list.length > 0) throw configInvalidError(what, this.list);
  }
}

export function configInvalidError(what: string, issues: readonly ConfigIssue[]): InputError {
  const count = issues.length === 1 ? '1 error' : `${issues.length} errors`;
  const lines = issues.map((i) => `  ${formatConfigIssue(i)}`);
  return new InputError(CONFIG_INVALID, `invalid ${what}: ${count}\n${lines.join('\n')}`, {
    details: { issues: Object.freeze(issues.slice()) },
  });
}

/** The issues carried by a `TRELLIS_CONFIG_INVALID` error, or none for any other value. */
export function configIssuesOf(err: unknown): readonly ConfigIssue[] {
  if (!(err instanceof InputError) || err.code !== CONFIG_INVALID) return [];
  const issues = err.details?.issues;
  return Array.isArray(issues) ? (issues as ConfigIssue[]) : [];
}
