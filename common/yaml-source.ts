/**
 * Reading configuration written by people: YAML files whose every error names its file, line and column.
 *
 * A config file is parsed once at the edge into `ConfigNode`s that remember where they came from. Validators
 * walk those nodes (`object`, `list`, `string`, ...) and record each problem in one `ConfigIssues` list
 * instead of stopping at the first, so an operator fixes a whole file in one pass:
 *
 *   policy/shop.yaml:7:15: spec.rules[0].action: expected one of "allow", "deny", got "permit"
 *
 * The same nodes can be built from plain JSON (objects that came back off the wire or from the Kubernetes
 * API), so one validator serves both; such nodes have no position and report line and column 0.
 * Nothing here knows any particular config format.
 */
import { promises as fs } from 'node:fs';
import { Document, LineCounter, isScalar, parseAllDocuments, type Node } from 'yaml';
import { CONFIG_UNREADABLE, type ConfigIssues } from './config-issues.js';
import { ConfigNode, type DocumentContext, type Locate } from './config-node.js';
import { InputError } from './errors.js';

// The issue list and the node walker live in their own modules; callers may import them from there or from here.
export { CONFIG_INVALID, CONFIG_UNREADABLE, ConfigIssues, configInvalidError, configIssuesOf, formatConfigIssue, type ConfigIssue } from './config-issues.js';
export { ConfigNode, ConfigObject, type ObjectShape, type StringRule } from './config-node.js';

/** Config files are small; a bigger one is a mistake (a log, a binary) and is refused before parsing. */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

export interface YamlText {
  /** Shown in errors; usually the path the text was read from. */
  readonly path: string;
  readonly text: string;
}

/** Reads a config file as text, refusing files too big to be config. Missing or unreadable files are InputErrors. */
export async function readConfigFile(path: string, maxBytes = MAX_CONFIG_FILE_BYTES): Promise<YamlText> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'r');
  } catch (err) {
    throw new InputError(CONFIG_UNREADABLE, `${path}: cannot read config file (${(err as Error).message})`, { cause: err });
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new InputError(CONFIG_UNREADABLE, `${path}: not a regular file`);
    if (stat.size > maxBytes) {
      throw new InputError(CONFIG_UNREADABLE, `${path}: ${stat.size} bytes is more than the ${maxBytes}-byte limit for a config file`);
    }
    return { path, text: await handle.readFile('utf8') };
  } finally {
    await handle.close();
  }
}

const NO_POSITION: Locate = () => ({ line: 0, column: 0 });

/**
 * Parses every document of a YAML text. Syntax errors (and duplicate keys) are recorded in `issues`;
 * a document with syntax errors yields no node. Empty documents (a lone `---`, comments only) are skipped.
 */
export function parseYamlDocuments(source: YamlText, issues: ConfigIssues): ConfigNode[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(source.text, { lineCounter, prettyErrors: false, uniqueKeys: true, version: '1.2' });
  const locate: Locate = (node) => {
    const offset = node?.range?.[0];
    if (offset === undefined) return { line: 0, column: 0 };
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  const list = Array.isArray(docs) ? docs : [docs];
  const out: ConfigNode[] = [];
  for (const doc of list) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = lineCounter.linePos(e.pos[0]);
        issues.add({ file: source.path, line: pos.line, column: pos.col, path: '', message: `YAML: ${firstLine(e.message)}` });
      }
      continue;
    }
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) continue;
    const ctx: DocumentContext = { file: source.path, issues, locate, doc, aliases: 0 };
    out.push(new ConfigNode(ctx, doc.contents as Node, ''));
  }
  return out;
}

/**
 * A node over a plain value (parsed JSON), so wire data is validated with the same code as files.
 * `file` names where the value came from ("config snapshot 42"), `path` where it sits in it ("[3]").
 */
export function configNodeFromValue(value: unknown, file: string, path: string, issues: ConfigIssues): ConfigNode {
  const doc = new Document(null, { version: '1.2' });
  // Repeated object references must stay values, not become YAML aliases.
  const node = doc.createNode(value, { aliasDuplicateObjects: false, keepUndefined: false });
  const ctx: DocumentContext = { file, issues, locate: NO_POSITION, doc, aliases: 0 };
  return new ConfigNode(ctx, node, path);
}

function firstLine(text: string): string {
  const nl = text.indexOf('\n');
  return nl < 0 ? text : text.slice(0, nl);
}
