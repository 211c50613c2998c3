import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError } from '../../common/errors.js';
import {
  CONFIG_INVALID,
  ConfigIssues,
  configIssuesOf,
  configNodeFromValue,
  formatConfigIssue,
  parseYamlDocuments,
  readConfigFile,
  type ConfigNode,
} from '../../common/yaml-source.js';

/** A tiny config format used only here: { name: DNS-ish string, port: 1..65535, tags?: [string] }. */
function readServer(doc: ConfigNode): { name?: string; port?: number; tags?: string[] } {
  const obj = doc.object({ required: ['name', 'port'], optional: ['tags', 'tls'] });
  if (obj === undefined) return {};
  const name = obj.field('name')?.string({ pattern: /[a-z]+/, expected: 'lowercase letters' });
  const port = obj.field('port')?.integer({ min: 1, max: 65535 });
  const tags = obj.field('tags')?.list({ minItems: 1 })?.map((t) => t.string() ?? '');
  obj.field('tls')?.boolean();
  return { ...(name === undefined ? {} : { name }), ...(port === undefined ? {} : { port }), ...(tags === undefined ? {} : { tags }) };
}

function issuesOf(path: string, text: string): string[] {
  const issues = new ConfigIssues();
  for (const doc of parseYamlDocuments({ path, text }, issues)) readServer(doc);
  return issues.all().map(formatConfigIssue);
}

describe('YAML config source', () => {
  it('reads a valid document with no issues', () => {
    const issues = new ConfigIssues();
    const docs = parseYamlDocuments({ path: 'a.yaml', text: 'name: web\nport: 8080\ntags: [x]\n' }, issues);
    expect(docs).toHaveLength(1);
    expect(readServer(docs[0] as ConfigNode)).toEqual({ name: 'web', port: 8080, tags: ['x'] });
    expect(issues.count).toBe(0);
    expect(() => issues.throwIfAny('server config')).not.toThrow();
  });

  it('reports every error at once, each with file, line, column and field path', () => {
    const text = ['name: Web1', 'port: 70000', 'tags: []', 'colour: blue', 'tsl: true'].join('\n');
    expect(issuesOf('srv.yaml', text)).toEqual([
      'srv.yaml:4:1: colour: unknown field',
      'srv.yaml:5:1: tsl: unknown field (did you mean "tls"?)',
      'srv.yaml:1:7: name: expected lowercase letters, got "Web1"',
      'srv.yaml:2:7: port: expected an integer from 1 to 65535, got 70000',
      'srv.yaml:3:7: tags: must not be empty',
    ]);
  });

  it('reports missing required fields at the mapping, and treats null as absent', () => {
    expect(issuesOf('m.yaml', 'name: web\nport:\n')).toEqual(['m.yaml:1:1: missing required field "port"']);
  });

  it('names list items by index and reports wrong types with what was found', () => {
    expect(issuesOf('l.yaml', 'name: web\nport: "80"\ntags:\n  - ok\n  - {a: 1}\n')).toEqual([
      'l.yaml:2:7: port: expected an integer, got "80"',
      'l.yaml:5:5: tags[1]: expected a string, got a mapping',
    ]);
  });

  it('reads several documents and reports syntax errors and duplicate keys with positions', () => {
    const text = 'name: a\nport: 1\n---\nname: b\nname: c\nport: 2\n---\n# only a comment\n---\nname: [unclosed\n';
    const issues = new ConfigIssues();
    const docs = parseYamlDocuments({ path: 'multi.yaml', text }, issues);
    expect(docs).toHaveLength(1);
    const lines = issues.all().map(formatConfigIssue);
    expect(lines.some((l) => l.startsWith('multi.yaml:5:') && l.includes('Map keys must be unique'))).toBe(true);
    expect(lines.some((l) => l.startsWith('multi.yaml:11:1: YAML: Flow sequence'))).toBe(true);
  });

  it('throws one InputError with code TRELLIS_CONFIG_INVALID carrying every issue in details', () => {
    const issues = new ConfigIssues();
    for (const doc of parseYamlDocuments({ path: 'x.yaml', text: 'port: 0\nextra: 1\n' }, issues)) readServer(doc);
    let thrown: unknown;
    try {
      issues.throwIfAny('server config');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(InputError);
    expect((thrown as InputError).code).toBe(CONFIG_INVALID);
    expect((thrown as InputError).message).toContain('invalid server config: 3 errors');
    expect(configIssuesOf(thrown)).toEqual([
      { file: 'x.yaml', line: 2, column: 1, path: 'extra', message: 'unknown field' },
      { file: 'x.yaml', line: 1, column: 1, path: '', message: 'missing required field "name"' },
      { file: 'x.yaml', line: 1, column: 7, path: 'port', message: 'expected an integer from 1 to 65535, got 0' },
    ]);
  });

  it('validates plain values with the same readers, reporting paths without positions', () => {
    const issues = new ConfigIssues();
    readServer(configNodeFromValue({ name: 'web', port: 'x', tags: ['a', 3] }, 'snapshot 7', '[2]', issues));
    expect(issues.all().map(formatConfigIssue)).toEqual(['snapshot 7: [2].port: expected an integer, got "x"', 'snapshot 7: [2].tags[1]: expected a string, got the number 3']);
  });

  it('keeps repeated references in plain values as values', () => {
    const shared = ['a'];
    const issues = new ConfigIssues();
    const node = configNodeFromValue({ one: shared, two: shared }, 'wire', '', issues);
    const obj = node.object({ optional: ['one', 'two'] });
    expect(obj?.field('two')?.list()?.map((n) => n.string())).toEqual(['a']);
    expect(issues.count).toBe(0);
  });

  it('follows a few aliases but refuses alias bombs', () => {
    expect(issuesOf('alias.yaml', 'name: &n web\nport: 1\ntags: [*n, *n]\n')).toEqual([]);
    const bomb = ['name: web', 'port: 1', 'tags: &t [x]', `tls: [${Array.from({ length: 150 }, () => '*t').join(', ')}]`].join('\n');
    const issues = new ConfigIssues();
    const [doc] = parseYamlDocuments({ path: 'bomb.yaml', text: bomb }, issues);
    for (const item of (doc as ConfigNode).object({ optional: ['name', 'port', 'tags', 'tls'] })?.field('tls')?.list() ?? []) item.list();
    expect(issues.all().some((i) => i.message.includes('more than 100 YAML aliases'))).toBe(true);
  });

  it('quotes keys that are not plain identifiers in paths', () => {
    const issues = new ConfigIssues();
    const [doc] = parseYamlDocuments({ path: 'k.yaml', text: 'labels:\n  app.kubernetes.io/name: 3\n' }, issues);
    (doc as ConfigNode).object({ optional: ['labels'] })?.field('labels')?.stringMap();
    expect(issues.all().map(formatConfigIssue)).toEqual(['k.yaml:2:27: labels["app.kubernetes.io/name"]: expected a string, got the number 3']);
  });

  it('suggests only near misses, and keeps a "__proto__" key as a plain key', () => {
    expect(issuesOf('s.yaml', 'name: web\nport: 1\nid: 3\n')).toEqual(['s.yaml:3:1: id: unknown field']);
    const issues = new ConfigIssues();
    const [doc] = parseYamlDocuments({ path: 'p.yaml', text: 'labels: { __proto__: x, team: pay }\n' }, issues);
    const labels = (doc as ConfigNode).object({ optional: ['labels'] })?.field('labels')?.stringMap();
    expect(Object.getPrototypeOf(labels)).toBe(Object.prototype);
    expect(Object.keys(labels ?? {})).toEqual(['__proto__', 'team']);
  });

  describe('reading files', () => {
    let dir: string | undefined;
    afterEach(async () => {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      dir = undefined;
    });

    it('reads a file, and refuses a missing file or one over the size limit with InputErrors', async () => {
      dir = await mkdtemp(join(tmpdir(), 'trellis-yaml-'));
      const path = join(dir, 'c.yaml');
      await writeFile(path, 'name: web\n');
      expect(await readConfigFile(path)).toEqual({ path, text: 'name: web\n' });
      await expect(readConfigFile(join(dir, 'missing.yaml'))).rejects.toMatchObject({ code: 'TRELLIS_CONFIG_UNREADABLE' });
      await expect(readConfigFile(path, 4)).rejects.toThrow(/limit/);
      await expect(readConfigFile(dir)).rejects.toThrow(/not a regular file/);
    });
  });
});
