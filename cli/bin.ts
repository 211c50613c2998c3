#!/usr/bin/env node
/**
 * The installed `trellis` binary (package.json "bin"). It checks the Node.js running it before loading
 * anything of the mesh, so an installation on an older Node says what to do instead of failing on some
 * missing API deep inside. In a checkout, `npm run` and `npx` put the project's own Node first on PATH;
 * a global install runs on the Node that `node` finds on PATH (see README "Install").
 */
export const MIN_NODE_MAJOR = 24;

const major = Number(process.versions.node.split('.')[0]);
if (major < MIN_NODE_MAJOR) {
  process.stderr.write(
    `trellis: needs Node.js ${MIN_NODE_MAJOR} or later; this is ${process.version} (${process.execPath}).\n` +
      `trellis: install Node.js ${MIN_NODE_MAJOR} LTS, or bring it beside trellis: npm install -g --prefix PREFIX node@${MIN_NODE_MAJOR} and put PREFIX/bin first on PATH.\n`,
  );
  process.exit(1);
}
const { runAsBinary } = await import('./main.js');
runAsBinary();
