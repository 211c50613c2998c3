/**
 * Dependencies run one way (docs/architecture.md). This test reads every import of every source file
 * and fails when a folder imports one it must not, so the layering cannot erode one shortcut at a time.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');

const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  common: [],
  ca: ['common'],
  policy: ['common', 'ca'],
  api: ['common', 'ca', 'policy'],
  proxy: ['common', 'ca', 'policy', 'api'],
  control: ['common', 'ca', 'policy', 'api'],
  agent: ['common', 'ca', 'policy', 'api', 'proxy'],
  injector: ['common', 'ca', 'api'],
  capture: ['common'],
  // The web UI runs in a browser: it speaks to the control plane only through /ui/api/* JSON, never imports it.
  ui: [],
  // The top: the benchmarks (npm run bench*), the demo behind `trellis demo`, and the CLI that assembles everything.
  bench: ['common', 'ca', 'policy', 'api', 'proxy', 'control'],
  demo: ['common', 'control'],
  // The mesh gateway: an agent in-process (its identity and sidecar) with client-facing listeners in front.
  gateway: ['common', 'ca', 'policy', 'api', 'proxy', 'agent'],
  cli: ['common', 'ca', 'policy', 'api', 'proxy', 'control', 'agent', 'gateway', 'injector', 'capture', 'demo', 'bench'],
};

function sourceFiles(dir: string): string[] {
  let out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out = out.concat(sourceFiles(path));
    else if (name.endsWith('.ts') || name.endsWith('.tsx')) out.push(path);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]/g)) specs.push(m[1] as string);
  for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1] as string);
  for (const m of text.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)) specs.push(m[1] as string);
  return specs.filter((s) => s.startsWith('.'));
}

describe('one-way dependencies', () => {
  it('no folder imports one that sits above it', () => {
    const violations: string[] = [];
    for (const [folder, allowed] of Object.entries(ALLOWED)) {
      for (const file of sourceFiles(join(ROOT, folder))) {
        for (const spec of importsOf(file)) {
          const target = relative(ROOT, resolve(dirname(file), spec)).split(sep)[0] as string;
          if (target !== folder && !allowed.includes(target)) violations.push(`${relative(ROOT, file)} imports ${spec} (${folder} → ${target})`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('inbound and outbound never import each other', () => {
    const violations: string[] = [];
    for (const [side, other] of [['inbound', 'outbound'], ['outbound', 'inbound']] as const) {
      for (const file of sourceFiles(join(ROOT, 'proxy', side))) {
        for (const spec of importsOf(file)) {
          const target = relative(join(ROOT, 'proxy'), resolve(dirname(file), spec)).split(sep)[0];
          if (target === other) violations.push(`${relative(ROOT, file)} imports ${spec}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  /**
   * Inside proxy/ the folders show the flow, and the shared ones stay shared: core/ (what both sides use)
   * imports only itself; http/ (rules every HTTP path applies) and http1/ (the HTTP/1.1 codec) import each
   * other and core/; inbound/ and outbound/ build on those and never on each other (the rule above) nor on
   * the assembly at proxy/'s top (sidecar.ts and its helpers), which alone imports both sides.
   */
  it('inside proxy/, core/, http/, http1/ and http2/ import nothing from inbound/, outbound/ or the assembly; ingress/ builds on both sides but never on the assembly', () => {
    const INSIDE: Readonly<Record<string, readonly string[]>> = {
      core: ['core'],
      http: ['core', 'http', 'http1'],
      http1: ['core', 'http', 'http1'],
      http2: ['core', 'http', 'http2'],
      inbound: ['core', 'http', 'http1', 'http2', 'inbound'],
      outbound: ['core', 'http', 'http1', 'http2', 'outbound'],
      // The zone ingress is an inbound port (the tunnel's accept path) that balances like an outbound one.
      ingress: ['core', 'http', 'inbound', 'outbound', 'ingress'],
    };
    const violations: string[] = [];
    for (const [folder, allowed] of Object.entries(INSIDE)) {
      for (const file of sourceFiles(join(ROOT, 'proxy', folder))) {
        for (const spec of importsOf(file)) {
          const path = relative(join(ROOT, 'proxy'), resolve(dirname(file), spec));
          if (path.startsWith('..')) continue; // outside proxy/: the folder rules above
          const parts = path.split(sep);
          const target = parts.length === 1 ? `${parts[0]} (proxy/ top level)` : (parts[0] as string);
          if (!allowed.includes(target)) violations.push(`${relative(ROOT, file)} imports ${spec} (${folder} → ${target})`);
        }
      }
    }
    expect(violations).toEqual([]);
    // The rule reads real files: an empty folder list would pass it vacuously.
    expect(sourceFiles(join(ROOT, 'proxy', 'http1')).length).toBeGreaterThan(0);
  });

  it('nothing outside proxy/ reaches into proxy/inbound or proxy/outbound (only proxy/ itself, e.g. sidecar.ts, assembles them)', () => {
    const violations: string[] = [];
    for (const folder of Object.keys(ALLOWED).filter((f) => f !== 'proxy')) {
      for (const file of sourceFiles(join(ROOT, folder))) {
        for (const spec of importsOf(file)) {
          const [top, side] = relative(ROOT, resolve(dirname(file), spec)).split(sep);
          if (top === 'proxy' && (side === 'inbound' || side === 'outbound')) violations.push(`${relative(ROOT, file)} imports ${spec}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });
});
