/**
 * A value in a config document that remembers where it came from, and the checks validators run on it.
 *
 * Validators walk `ConfigNode`s (`object`, `list`, `string`, ...) and each check that fails reports at the
 * node (file, line, column, path) into the document's `ConfigIssues`, then yields undefined, so one pass finds
 * every problem. Nodes are made by `common/yaml-source.ts` from YAML text or from plain values.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import type { ConfigIssues } from './config-issues.js';
import { parseDuration } from './duration.js';

/** YAML aliases can expand a small file into a huge tree ("billion laughs"); a config needs only a few. */
const MAX_ALIASES_PER_DOCUMENT = 100;

/** Position of a YAML node; absent for nodes built from plain values. */
export type Locate = (node: Node | null) => { line: number; column: number };

/** State shared by all nodes of one document; made by `yaml-source.ts`, which parses the document. */
export interface DocumentContext {
  readonly file: string;
  readonly issues: ConfigIssues;
  readonly locate: Locate;
  readonly doc: Document;
  aliases: number;
}

export interface StringRule {
  /** Refuse the empty string (default true). */
  readonly nonEmpty?: boolean;
  readonly maxLength?: number;
  /** The whole string must match; `expected` says in words what it should look like. */
  readonly pattern?: RegExp;
  readonly expected?: string;
}

export interface ObjectShape {
  readonly required?: readonly string[];
  readonly optional?: readonly string[];
}

/** A value in a config document, with its source position and its path from the document root. */
export class ConfigNode {
  /** @internal */
  constructor(
    private readonly ctx: DocumentContext,
    private readonly node: Node | null,
    readonly path: string,
    /** The key this value sits under, where "missing field" problems of a mapping point to. */
    private readonly keyNode: Node | null = null,
  ) {}

  get file(): string {
    return this.ctx.file;
  }

  get line(): number {
    return this.ctx.locate(this.node).line;
  }

  get column(): number {
    return this.ctx.locate(this.node).column;
  }

  /**
   * The value as plain JSON data (aliases resolved, at most MAX_ALIASES_PER_DOCUMENT of them): for a
   * validated document that must travel as it was written and be validated again by its receiver.
   */
  plain(): unknown {
    return this.node === null ? null : (this.node.toJS(this.ctx.doc, { maxAliasCount: MAX_ALIASES_PER_DOCUMENT }) as unknown);
  }

  /** Records a problem at this node. `message` says what was expected, and what was found. */
  report(message: string): undefined {
    const pos = this.ctx.locate(this.node);
    this.ctx.issues.add({ file: this.ctx.file, line: pos.line, column: pos.column, path: this.path, message });
    return undefined;
  }

  /** The string value of `key` when this is a mapping that has one; reports nothing (for telling kinds apart). */
  peekString(key: string): string | undefined {
    const n = this.node;
    if (!isMap(n)) return undefined;
    for (const pair of n.items) {
      const k = pair.key as Node | null;
      const v = pair.value as Node | null;
      if (isScalar(k) && k.value === key) return isScalar(v) && typeof v.value === 'string' ? v.value : undefined;
    }
    return undefined;
  }

  get isNull(): boolean {
    const n = this.target();
    return n === null || (isScalar(n) && n.value === null);
  }

  string(rule: StringRule = {}): string | undefined {
    const n = this.target();
    if (!isScalar(n) || typeof n.value !== 'string') return this.report(`expected ${rule.expected ?? 'a string'}, got ${describe(n)}`);
    const value = n.value;
    if (value === '' && rule.nonEmpty !== false) return this.report(`expected ${rule.expected ?? 'a non-empty string'}, got ""`);
    if (rule.maxLength !== undefined && value.length > rule.maxLength) {
      return this.report(`must be at most ${rule.maxLength} characters, got ${value.length}`);
    }
    if (rule.pattern !== undefined && !wholeMatch(rule.pattern, value)) {
      return this.report(`expected ${rule.expected ?? `a string matching ${rule.pattern.source}`}, got ${JSON.stringify(value)}`);
    }
    return value;
  }

  integer(range: { readonly min?: number; readonly max?: number } = {}): number | undefined {
    const n = this.target();
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isInteger(n.value)) return this.report(`expected an integer, got ${describe(n)}`);
    const { min, max } = range;
    if ((min !== undefined && n.value < min) || (max !== undefined && n.value > max)) {
      return this.report(`expected an integer from ${min ?? '-∞'} to ${max ?? '∞'}, got ${n.value}`);
    }
    return n.value;
  }

  /** A finite number (integer or decimal: ratios, percentages) within `range`. */
  number(range: { readonly min: number; readonly max: number }): number | undefined {
    const n = this.target();
    if (!isScalar(n) || typeof n.value !== 'number' || !Number.isFinite(n.value)) return this.report(`expected a number, got ${describe(n)}`);
    if (n.value < range.min || n.value > range.max) return this.report(`expected a number from ${range.min} to ${range.max}, got ${n.value}`);
    return n.value;
  }

  /** A duration written as operators write them ("10s", "15m", "1h"), in milliseconds. */
  duration(): number | undefined {
    const text = this.string({ expected: 'a duration such as 10s, 15m, 1h' });
    if (text === undefined) return undefined;
    try {
      return parseDuration(text, 'duration');
    } catch (err) {
      return this.report((err as Error).message.replace(/^duration: /, ''));
    }
  }

  boolean(): boolean | undefined {
    const n = this.target();
    if (!isScalar(n) || typeof n.value !== 'boolean') return this.report(`expected true or false, got ${describe(n)}`);
    return n.value;
  }

  oneOf<T extends string>(values: readonly T[]): T | undefined {
    const n = this.target();
    const expected = `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
    if (!isScalar(n) || typeof n.value !== 'string' || !(values as readonly string[]).includes(n.value)) {
      const hint = isScalar(n) && typeof n.value === 'string' ? suggestion(n.value, values) : '';
      return this.report(`expected ${expected}, got ${describe(n)}${hint}`);
    }
    return n.value as T;
  }

  list(range: { readonly minItems?: number; readonly maxItems?: number } = {}): ConfigNode[] | undefined {
    const n = this.target();
    if (!isSeq(n)) return this.report(`expected a list, got ${describe(n)}`);
    const items = n.items as (Node | null)[];
    if (range.minItems !== undefined && items.length < range.minItems) {
      return this.report(range.minItems === 1 ? 'must not be empty' : `expected at least ${range.minItems} items, got ${items.length}`);
    }
    if (range.maxItems !== undefined && items.length > range.maxItems) {
      return this.report(`expected at most ${range.maxItems} items, got ${items.length}`);
    }
    return items.map((item, i) => new ConfigNode(this.ctx, item, `${this.path}[${i}]`));
  }

  /**
   * A mapping with known keys: reports every unknown key (at the key, with a suggestion for a likely typo)
   * and every missing required key. A key whose value is null counts as absent.
   */
  object(shape: ObjectShape): ConfigObject | undefined {
    const n = this.target();
    if (!isMap(n)) return this.report(`expected a mapping, got ${describe(n)}`);
    const required = shape.required ?? [];
    const known = [...required, ...(shape.optional ?? [])];
    const fields = new Map<string, ConfigNode>();
    for (const { key, keyNode, value } of this.entries(n.items)) {
      if (!known.includes(key)) {
        new ConfigNode(this.ctx, keyNode, childPath(this.path, key)).report(`unknown field${suggestion(key, known)}`);
        continue;
      }
      const child = new ConfigNode(this.ctx, value, childPath(this.path, key), keyNode);
      if (!child.isNull) fields.set(key, child);
    }
    const owner = this.keyNode === null ? this : new ConfigNode(this.ctx, this.keyNode, this.path);
    for (const key of required) {
      if (!fields.has(key)) owner.report(`missing required field "${key}"`);
    }
    return new ConfigObject(this, fields);
  }

  /** A mapping of strings to strings (labels, annotations, headers). */
  stringMap(): Record<string, string> | undefined {
    const n = this.target();
    if (!isMap(n)) return this.report(`expected a mapping of strings, got ${describe(n)}`);
    const out: Record<string, string> = {};
    const items = n.items;
    let ok = true;
    for (const { key, value } of this.entries(items)) {
      const text = new ConfigNode(this.ctx, value, childPath(this.path, key)).string({ nonEmpty: false });
      if (text === undefined) ok = false;
      // defineProperty: a key named "__proto__" must stay a key, not replace the prototype.
      else Object.defineProperty(out, key, { value: text, enumerable: true, writable: true, configurable: true });
    }
    return ok && Object.keys(out).length === items.length ? out : undefined;
  }

  /** The pairs of a mapping whose keys are strings; any other key is reported. */
  private entries(items: readonly { key: unknown; value: unknown }[]): { key: string; keyNode: Node | null; value: Node | null }[] {
    const out: { key: string; keyNode: Node | null; value: Node | null }[] = [];
    for (const pair of items) {
      const keyNode = pair.key as Node | null;
      const key = isScalar(keyNode) ? keyNode.value : undefined;
      if (typeof key === 'string') out.push({ key, keyNode, value: pair.value as Node | null });
      else new ConfigNode(this.ctx, keyNode, this.path).report(`keys must be strings, got ${describe(keyNode)}`);
    }
    return out;
  }

  /** The node itself with aliases followed, counting them so a small file cannot expand without bound. */
  private target(): Node | null {
    let n = this.node;
    while (n !== null && isAlias(n)) {
      this.ctx.aliases += 1;
      if (this.ctx.aliases > MAX_ALIASES_PER_DOCUMENT) {
        this.report(`more than ${MAX_ALIASES_PER_DOCUMENT} YAML aliases in one document`);
        return null;
      }
      n = (n.resolve(this.ctx.doc) as Node | undefined) ?? null;
    }
    return n;
  }
}

/** The known fields of a mapping that were present and not null. */
export class ConfigObject {
  constructor(
    readonly node: ConfigNode,
    private readonly fields: ReadonlyMap<string, ConfigNode>,
  ) {}

  field(key: string): ConfigNode | undefined {
    return this.fields.get(key);
  }

  has(key: string): boolean {
    return this.fields.has(key);
  }
}

function wholeMatch(pattern: RegExp, value: string): boolean {
  const m = pattern.exec(value);
  pattern.lastIndex = 0;
  return m !== null && m.index === 0 && m[0].length === value.length;
}

function childPath(parent: string, key: string): string {
  const plain = /^[A-Za-z_$][\w$-]*$/.test(key);
  if (plain) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${JSON.stringify(key)}]`;
}

function describe(n: Node | null): string {
  if (n === null) return 'nothing';
  if (isMap(n)) return 'a mapping';
  if (isSeq(n)) return 'a list';
  if (isScalar(n)) {
    const v = n.value;
    if (v === null) return 'null';
    if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
    if (typeof v === 'number') return `the number ${v}`;
    if (typeof v === 'boolean') return `the boolean ${v}`;
    return typeof v;
  }
  return 'an unsupported YAML value';
}

/** ` (did you mean "destination"?)` when a known word is a typo away (one edit for short words, two for longer). */
function suggestion(word: string, known: readonly string[]): string {
  const limit = word.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of known) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase(), limit);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best === undefined ? '' : ` (did you mean "${best}"?)`;
}

/** Edit distance counting a swap of neighbours as one edit ("form" → "from"); anything over `limit` is limit + 1. */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const up = d[i - 1] as number[];
      row[j] = Math.min((up[j] as number) + 1, (row[j - 1] as number) + 1, (up[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
    }
  }
  return Math.min((d[a.length] as number[])[b.length] as number, limit + 1);
}
