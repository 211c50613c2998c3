/**
 * Whether the module at `moduleUrl` (its `import.meta.url`) is the script node was asked to run, and not
 * imported by tests or by a launcher. argv[1] may be a symlink (npm's bin links), hence the realpath.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === fileURLToPath(moduleUrl);
  } catch {
    return false;
  }
}
