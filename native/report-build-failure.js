// Runs when `node-gyp rebuild` failed during `npm install`/`npm ci` (see the install script in package.json).
// A failed build must not fail the installation: explicit capture mode works without the addon. This
// script works out the most likely reason, writes it where the loader (proxy/core/original-dst.ts) finds it,
// prints a warning, and exits 0.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const reasonFile = join(root, 'build', 'original_dst-unavailable.txt');

function hasTool(name) {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function diagnose() {
  if (process.platform !== 'linux') {
    return `transparent capture needs Linux (iptables and SO_ORIGINAL_DST); this platform is ${process.platform}`;
  }
  const missing = [];
  if (!hasTool('python3') && !hasTool('python')) missing.push('python3');
  if (!hasTool('make')) missing.push('make');
  if (!hasTool('cc') && !hasTool('gcc') && !hasTool('clang')) missing.push('a C compiler (gcc or clang)');
  if (missing.length > 0) {
    return `node-gyp could not build the addon: missing ${missing.join(', ')} (Debian/Ubuntu: apt-get install -y python3 make gcc), then run \`npm rebuild\``;
  }
  if (!existsSync('/usr/include/linux/netfilter_ipv4.h')) {
    return 'node-gyp could not build the addon: the Linux kernel headers (linux/netfilter_ipv4.h) are missing (Debian/Ubuntu: apt-get install -y linux-libc-dev), then run `npm rebuild`';
  }
  return 'node-gyp could not build the addon (the build tools are present; see the node-gyp output above, often missing Node headers without network access: set npm_config_nodedir), then run `npm rebuild`';
}

const reason = diagnose();
try {
  mkdirSync(dirname(reasonFile), { recursive: true });
  writeFileSync(reasonFile, `${reason}\n`);
} catch (err) {
  process.stderr.write(`trellis: could not record the build failure in ${reasonFile}: ${err.message}\n`);
}
process.stderr.write(
  `\ntrellis: WARNING: the original-destination addon was not built, so transparent capture (iptables redirect) is unavailable.\n` +
    `trellis: ${reason}\n` +
    `trellis: explicit capture mode (a local port per upstream service) works without it.\n\n`,
);
