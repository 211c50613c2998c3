/**
 * A few of our TypeScript modules transpiled to plain JavaScript in a temporary directory (same relative
 * layout), so a fixture process inside a lab namespace can run the real code: Node 20 cannot run
 * TypeScript, and a full `npm run build` would tie these tests to every other module compiling.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface TranspiledModules {
  /** Absolute path of the transpiled .js for a module given as e.g. "proxy/core/original-dst.ts". */
  path(module: string): string;
  remove(): void;
}

/** `modules` must include every module they import: relative and node: imports only (no npm packages). */
export function transpileModules(modules: readonly string[]): TranspiledModules {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-transpiled-'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
  const outPath = (module: string): string => join(dir, module.replace(/\.ts$/, '.js'));
  for (const module of modules) {
    const source = readFileSync(join(REPO_ROOT, module), 'utf8');
    const out = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    mkdirSync(dirname(outPath(module)), { recursive: true });
    writeFileSync(outPath(module), out.outputText);
  }
  return { path: outPath, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The original-destination loader and what it imports. */
export const LOADER_MODULES = ['proxy/core/original-dst.ts', 'common/errors.ts', 'common/error-codes.ts'] as const;
/** The built addon, where `npm ci` puts it. */
export const ADDON_PATH = join(REPO_ROOT, 'build/Release/original_dst.node');
