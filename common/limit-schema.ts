/**
 * Limits described once: each with its default, its bounds, its unit and one line saying what it bounds.
 *
 * A component declares its limits as a schema (`defineLimits`); everything else follows from it: the
 * frozen defaults (`limitDefaults`), the one way partial overrides are merged (`withOverrides`), the bounds
 * check at the edge where an operator's value comes in (`checkLimit` for a number, `limitFromText` for a
 * flag, `readLimits` for a YAML mapping, which reports at file:line:column), and the table in
 * docs/operations.md (`limitTable`, compared with the doc by a test). The pattern is fastify's
 * initialConfigValidation: a schema, defaults, one validation at the edge, then a frozen object.
 *
 * Bounds are checked where input enters (config files, flags, the injector's config), not on the
 * programmatic path: tests and benchmarks construct components with values an operator may not set (a
 * 50 ms probe interval, a 2-session cap) and those are merged with `withOverrides` as given.
 */
import type { ConfigNode } from './config-node.js';
import { parseDuration } from './duration.js';
import { InputError } from './errors.js';
import { CODE } from './error-codes.js';

/** `ms` and `s` values are durations: in config files and flags they are written "10s", "15m". */
export type LimitUnit = 'count' | 'bytes' | 'ms' | 's' | 'MiB';

export interface LimitSpec {
  readonly default: number;
  /** Inclusive bounds an operator's value must keep. */
  readonly min: number;
  readonly max: number;
  readonly unit: LimitUnit;
  /** One line for the operator: what it bounds (the doc table prints it). */
  readonly doc: string;
  /** Its field name in a YAML `limits:` mapping; absent: not settable there. */
  readonly configName?: string;
}

export type LimitSchema = Readonly<Record<string, LimitSpec>>;
export type LimitValues<S extends LimitSchema> = { readonly [K in keyof S]: number };

/** Node's timers overflow beyond 2^31-1 ms (and then fire at once): the longest a duration limit may be. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Freezes a schema, refusing (at import, a programming error) a default outside its own bounds. */
export function defineLimits<const S extends LimitSchema>(schema: S): S {
  for (const [name, spec] of Object.entries(schema)) {
    if (!(spec.min <= spec.default && spec.default <= spec.max)) throw new RangeError(`limit ${name}: default ${spec.default} is outside ${spec.min}..${spec.max}`);
    Object.freeze(spec);
  }
  return Object.freeze(schema);
}

export function limitDefaults<S extends LimitSchema>(schema: S): LimitValues<S> {
  const out: Record<string, number> = {};
  for (const [name, spec] of Object.entries(schema)) out[name] = spec.default;
  return Object.freeze(out) as LimitValues<S>;
}

/** The one merge of overrides into defaults: an override that is undefined keeps the default. Frozen. */
export function withOverrides<T extends object>(defaults: T, overrides: Partial<T> = {}): Readonly<T> {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) out[k] = v;
  return Object.freeze(out) as T;
}

/** What is wrong with `value` for this limit (naming the bound it broke), or undefined. */
export function limitProblem(spec: LimitSpec, value: number): string | undefined {
  if (!Number.isInteger(value)) return `expected an integer${unitWords(spec.unit)}, got ${value}`;
  if (value < spec.min || value > spec.max) return `must be from ${formatLimit(spec.min, spec.unit)} to ${formatLimit(spec.max, spec.unit)}, got ${formatLimit(value, spec.unit)}`;
  return undefined;
}

/** Checks one value at the edge; a problem goes to `problems` as `name: ...` and the default is returned. */
export function checkLimit(name: string, spec: LimitSpec, value: number | undefined, problems: string[]): number {
  if (value === undefined) return spec.default;
  if (Number.isInteger(value) && value >= spec.min && value <= spec.max) return value;
  problems.push(`${name}: ${value} must be a whole number from ${spec.min} to ${spec.max}${unitWords(spec.unit)}`);
  return spec.default;
}

/** A flag's text (a duration for `ms`/`s` limits, else an integer), bounds checked; throws naming `what`. */
export function limitFromText(text: string, spec: LimitSpec, what: string): number {
  let value: number;
  if (spec.unit === 'ms' || spec.unit === 's') {
    const ms = parseDuration(text, what);
    value = spec.unit === 's' ? Math.round(ms / 1_000) : ms;
  } else {
    if (!/^\d{1,15}$/.test(text)) throw new InputError(CODE.LIMIT_INVALID, `${what}: "${text}" is not a whole number`);
    value = Number(text);
  }
  const problem = limitProblem(spec, value);
  if (problem !== undefined) throw new InputError(CODE.LIMIT_INVALID, `${what}: ${problem}`);
  return value;
}

/**
 * A YAML `limits:` mapping: every field of the schema that has a `configName`, durations written as
 * durations. Problems are reported at the node (file:line:column); a field with a problem keeps its default.
 */
export function readLimits<S extends LimitSchema>(node: ConfigNode | undefined, schema: S): LimitValues<S> {
  const out: Record<string, number> = { ...limitDefaults(schema) };
  const named = Object.entries(schema).filter(([, spec]) => spec.configName !== undefined);
  const o = node?.object({ optional: named.map(([, spec]) => spec.configName as string) });
  for (const [name, spec] of named) {
    const n = o?.field(spec.configName as string);
    if (n === undefined) continue;
    const value = spec.unit === 'ms' ? n.duration() : n.integer({ min: spec.min, max: spec.max });
    if (value === undefined) continue;
    const problem = limitProblem(spec, value);
    if (problem === undefined) out[name] = value;
    else n.report(problem);
  }
  return Object.freeze(out) as LimitValues<S>;
}

const BINARY = [
  [1024 * 1024 * 1024, 'GiB'],
  [1024 * 1024, 'MiB'],
  [1024, 'KiB'],
] as const;
const TIME = [
  [86_400_000, 'd'],
  [3_600_000, 'h'],
  [60_000, 'm'],
  [1_000, 's'],
] as const;

/** "10s", "16 KiB", "1,024": a limit as the doc table and error messages show it. */
export function formatLimit(value: number, unit: LimitUnit): string {
  if (unit === 'ms' || unit === 's') {
    const ms = unit === 's' ? value * 1_000 : value;
    for (const [size, suffix] of TIME) if (ms >= size && ms % size === 0) return `${ms / size}${suffix}`;
    return `${ms}ms`;
  }
  if (unit === 'bytes') {
    for (const [size, suffix] of BINARY) if (value >= size && value % size === 0) return `${value / size} ${suffix}`;
    return `${value.toLocaleString('en-US')} bytes`;
  }
  if (unit === 'MiB') return `${value} MiB`;
  return value.toLocaleString('en-US');
}

function unitWords(unit: LimitUnit): string {
  return unit === 'count' ? '' : unit === 'bytes' ? ' (bytes)' : unit === 'ms' ? ' (milliseconds)' : unit === 's' ? ' (seconds)' : ' (MiB)';
}

/** Markdown rows for a schema: name (and config field), default, bounds, what it bounds. */
export function limitTable(schema: LimitSchema): string {
  const rows = ['| limit | config field | default | bounds | what it bounds |', '|---|---|---|---|---|'];
  for (const [name, spec] of Object.entries(schema)) {
    const field = spec.configName === undefined ? '' : `\`${spec.configName}\``;
    rows.push(`| \`${name}\` | ${field} | ${formatLimit(spec.default, spec.unit)} | ${formatLimit(spec.min, spec.unit)} – ${formatLimit(spec.max, spec.unit)} | ${spec.doc} |`);
  }
  return rows.join('\n');
}
