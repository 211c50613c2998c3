/**
 * Where things are relative to the package: the built `trellis` CLI the Trellis pair runs, and the results
 * directory. Found by walking up from this file to package.json, so it works from `dist/bench/` (npm run
 * bench) and from `bench/` (tests running the TypeScript source) alike.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'trellis-mesh';

export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME) return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the ${PACKAGE_NAME} package root above ${from}`);
    dir = parent;
  }
}

export function builtCliPath(root: string = packageRoot()): string {
  return join(root, 'dist', 'cli', 'main.js');
}

export function defaultResultsDir(root: string = packageRoot()): string {
  return join(root, 'bench', 'results');
}
