/**
 * `trellis cni plugin|install|uninstall|node-agent`: CNI capture on Kubernetes nodes. `node-agent` is what
 * the trellis-cni DaemonSet runs: install (again every --interval, which puts our conflist entry back if
 * the primary plugin rewrote it and refreshes the plugin's token), repair pods that started without the
 * plugin, and uninstall on SIGTERM. Paths have two views: where this process writes (the host's dirs
 * mounted under /host) and where the host and its runtime see them (written into the shim and the entry).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { InputError, describeError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { parseDuration } from '../common/duration.js';
import { createLogger } from '../common/log.js';
import { TRELLIS_VERSION } from '../common/version.js';
import { copyRuntime, installCni, uninstallCni, type CniPaths, type CniRuntime } from '../capture/cni/install.js';
import { repairPass } from '../capture/cni/repair.js';
import { DEFAULT_STATE_DIR } from '../capture/cni/plugin.js';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { parseFlags, type CommandSpec } from './flag-spec.js';
import { cniPlugin } from './cni-plugin.js';

const IN_CLUSTER = { token: '/var/run/secrets/kubernetes.io/serviceaccount/token', ca: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt' };

const INSTALL_FLAGS = {
  'cni-bin-dir': { type: 'string', value: 'DIR', help: 'where to write the plugin executable', whenAbsent: '/host/opt/cni/bin' },
  'cni-conf-dir': { type: 'string', value: 'DIR', help: 'where the conflist is (our entry is appended to the first by name)', whenAbsent: '/host/etc/cni/net.d' },
  'host-cni-conf-dir': { type: 'string', value: 'DIR', help: 'the same directory as the host sees it', whenAbsent: '/etc/cni/net.d' },
  'state-dir': { type: 'string', value: 'DIR', help: "the plugin's records of the pods it set up, as the host sees it (repair\nreads it at the same path)", whenAbsent: DEFAULT_STATE_DIR },
  runtime: { type: 'string', value: 'copy|host', help: 'copy: copy Node and Trellis to --runtime-dir for the shim; host: the shim\nruns this very Node and CLI (Trellis installed on the host itself)', whenAbsent: 'copy' },
  'runtime-dir': { type: 'string', value: 'DIR', help: 'with --runtime copy: where the copy goes', whenAbsent: '/host/opt/trellis-cni' },
  'host-runtime-dir': { type: 'string', value: 'DIR', help: 'the same directory as the host sees it', whenAbsent: '/opt/trellis-cni' },
  'plugin-kubeconfig': { type: 'string', value: 'FILE', help: 'the kubeconfig the plugin reads pods with', whenAbsent: "built from this pod's service account (server, CA, token)" },
  'exclude-namespace': { type: 'string', multiple: true, value: 'NS', help: 'pods the plugin never reads (repeatable)', whenAbsent: 'kube-system, trellis-system' },
} as const;

const AGENT_FLAGS = {
  ...INSTALL_FLAGS,
  node: { type: 'string', value: 'NAME', help: 'this node (the DaemonSet passes spec.nodeName)', whenAbsent: '$NODE_NAME' },
  interval: { type: 'string', value: 'DURATION', help: 'between re-installs and repair passes', whenAbsent: '30s' },
  repair: { type: 'string', value: 'on|off', help: 'delete (for re-creation) marked pods that started without the plugin', whenAbsent: 'on' },
  'repair-min-age': { type: 'string', value: 'DURATION', help: 'leave younger pods for the next pass', whenAbsent: '15s' },
  'keep-on-exit': { type: 'boolean', help: 'leave the plugin installed when stopped (upgrades in place)', whenAbsent: 'off: uninstall on SIGTERM' },
  kubeconfig: { type: 'string', value: 'FILE', help: "the agent's own API access", whenAbsent: 'in-cluster' },
  'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|silent', whenAbsent: 'info' },
} as const;

const PLUGIN_SPEC = { usage: 'trellis cni plugin', about: 'The chained CNI plugin itself (the runtime runs it through /opt/cni/bin/trellis-cni): CNI_* in the\nenvironment, the network configuration on stdin; ADD, DEL, CHECK, VERSION, STATUS, GC.', flags: {} } as const satisfies CommandSpec;
const INSTALL_SPEC = { usage: 'trellis cni install [options]', about: 'Writes the plugin, its kubeconfig and its conflist entry on this node (idempotent).', flags: INSTALL_FLAGS } as const satisfies CommandSpec;
const UNINSTALL_SPEC = { usage: 'trellis cni uninstall [--cni-bin-dir DIR] [--cni-conf-dir DIR]', about: 'Removes our conflist entry, the plugin and its kubeconfig, and nothing else.', flags: { 'cni-bin-dir': INSTALL_FLAGS['cni-bin-dir'], 'cni-conf-dir': INSTALL_FLAGS['cni-conf-dir'] } } as const satisfies CommandSpec;
const AGENT_SPEC = { usage: 'trellis cni node-agent [options]', about: 'The trellis-cni DaemonSet: install, keep installed, repair pods, uninstall on SIGTERM.', flags: AGENT_FLAGS } as const satisfies CommandSpec;

type InstallValues = ReturnType<typeof parseFlags<typeof INSTALL_FLAGS>>['values'];

function thisCli(): { appRoot: string; main: string } {
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  return { main, appRoot: resolve(dirname(main), '..', '..') };
}

/** A kubeconfig with this pod's service-account token, for the plugin on the host. */
async function inClusterKubeconfig(env: CommandContext['env']): Promise<string> {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (host === undefined) throw new InputError(CODE.K8S_NO_CREDENTIALS, 'not in a pod (KUBERNETES_SERVICE_HOST unset): pass --plugin-kubeconfig');
  const [token, ca] = await Promise.all([readFile(IN_CLUSTER.token, 'utf8'), readFile(IN_CLUSTER.ca)]).catch((err: unknown) => {
    throw new InputError(CODE.K8S_NO_CREDENTIALS, `cannot read the service-account token and CA: ${describeError(err)}`);
  });
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'trellis-cni', cluster: { server, 'certificate-authority-data': ca.toString('base64') } }],
    users: [{ name: 'trellis-cni', user: { token: token.trim() } }],
    contexts: [{ name: 'trellis-cni', context: { cluster: 'trellis-cni', user: 'trellis-cni' } }],
    'current-context': 'trellis-cni',
  });
}

async function installFrom(values: InstallValues, ctx: CommandContext): Promise<{ paths: CniPaths; changed: readonly string[]; conflist: string }> {
  const mode = values.runtime ?? 'copy';
  if (mode !== 'copy' && mode !== 'host') throw new InputError(CODE.CLI_USAGE, `--runtime: "${mode}" is not copy or host`);
  const paths: CniPaths = {
    binDir: values['cni-bin-dir'] ?? '/host/opt/cni/bin',
    confDir: values['cni-conf-dir'] ?? '/host/etc/cni/net.d',
    hostConfDir: values['host-cni-conf-dir'] ?? '/etc/cni/net.d',
    hostStateDir: values['state-dir'] ?? DEFAULT_STATE_DIR,
  };
  for (const [name, dir] of Object.entries(paths)) if (!dir.startsWith('/')) throw new InputError(CODE.CLI_USAGE, `${name}: "${dir}" must be an absolute path`);
  const cli = thisCli();
  let runtime: CniRuntime = { node: process.execPath, main: cli.main };
  if (mode === 'copy') {
    const hostDir = values['host-runtime-dir'] ?? '/opt/trellis-cni';
    await copyRuntime(cli.appRoot, process.execPath, values['runtime-dir'] ?? '/host/opt/trellis-cni', TRELLIS_VERSION);
    runtime = { node: `${hostDir}/node`, main: `${hostDir}/app/dist/cli/main.js` };
  }
  const kubeconfig = values['plugin-kubeconfig'] === undefined ? await inClusterKubeconfig(ctx.env) : await readFile(values['plugin-kubeconfig'], 'utf8');
  const report = await installCni({ paths, runtime, kubeconfig, excludeNamespaces: values['exclude-namespace'] ?? ['kube-system', 'trellis-system'] });
  return { paths, ...report };
}

async function nodeAgent(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values } = parseFlags(AGENT_SPEC, argv);
  const logger = createLogger({ name: 'trellis-cni', level: (values['log-level'] ?? 'info') as 'info' });
  const nodeName = values.node ?? ctx.env.NODE_NAME;
  const repairOn = (values.repair ?? 'on') === 'on';
  if (repairOn && (nodeName === undefined || nodeName === '')) throw new InputError(CODE.CLI_USAGE, '--node (or $NODE_NAME) is required for repair; or pass --repair off');
  const intervalMs = parseDuration(values.interval ?? '30s', '--interval');
  const minAgeMs = parseDuration(values['repair-min-age'] ?? '15s', '--repair-min-age');
  // Loaded here, not at the top: the runtime runs `trellis cni plugin` for every pod, and it does not need it.
  const [{ CoreV1Api, KubeConfig }, { makeTrellisApiClient }] = await Promise.all([import('@kubernetes/client-node'), import('../common/kubernetes-client.js')]);
  const kc = new KubeConfig();
  if (values.kubeconfig !== undefined) kc.loadFromFile(values.kubeconfig);
  else if (repairOn) kc.loadFromCluster();
  const api = repairOn ? makeTrellisApiClient(kc, CoreV1Api, 'cni') : undefined;
  let paths: CniPaths | undefined;
  const pass = async (): Promise<void> => {
    try {
      const report = await installFrom(values, ctx);
      paths = report.paths;
      if (report.changed.length > 0) logger.info({ conflist: report.conflist, changed: report.changed }, 'trellis-cni installed');
    } catch (err) {
      logger.warn({ err: describeError(err) }, 'trellis-cni not installed yet; retrying');
      return;
    }
    if (api === undefined || nodeName === undefined) return;
    try {
      const repaired = await repairPass({ api, nodeName, stateDir: values['state-dir'] ?? DEFAULT_STATE_DIR, minAgeMs });
      for (const pod of repaired.deleted) logger.warn({ pod }, 'pod started without the Trellis CNI plugin: deleted for re-creation');
      for (const pod of repaired.unrepairable) logger.error({ pod }, 'pod started without the Trellis CNI plugin and has no controller: delete it by hand');
    } catch (err) {
      logger.warn({ err: describeError(err) }, 'repair pass failed; retrying');
    }
  };
  await pass();
  ctx.stdout.write(`${JSON.stringify({ event: 'ready', installed: paths !== undefined })}\n`);
  const timer = setInterval(() => void pass(), intervalMs);
  const { untilSignal } = await import('./control.js');
  const signal = await untilSignal();
  clearInterval(timer);
  if (values['keep-on-exit'] !== true && paths !== undefined) {
    const removed = await uninstallCni(paths);
    logger.info({ signal, removed }, 'trellis-cni uninstalled');
  }
  logger.flush();
  return EXIT_OK;
}

const USAGE = `Usage: trellis cni <plugin|install|uninstall|node-agent> [options]

  plugin       the chained CNI plugin (run by the container runtime)
  install      write the plugin, its kubeconfig and its conflist entry on this node
  uninstall    remove them
  node-agent   the DaemonSet: install, keep installed, repair pods, uninstall on exit

Run \`trellis cni <subcommand> --help\` for its options.
`;

export const cniCommand: Command = {
  name: 'cni',
  usage: USAGE,
  forms: { plugin: PLUGIN_SPEC, install: INSTALL_SPEC, uninstall: UNINSTALL_SPEC, 'node-agent': AGENT_SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [name, ...rest] = argv;
    switch (name) {
      case 'plugin':
        // The runtime passes no arguments; this answers --help and refuses anything else.
        parseFlags(PLUGIN_SPEC, rest);
        return cniPlugin(ctx);
      case 'install': {
        const { values } = parseFlags(INSTALL_SPEC, rest);
        const report = await installFrom(values, ctx);
        ctx.stdout.write(report.changed.length === 0 ? `trellis-cni already installed in ${report.conflist}\n` : `trellis-cni installed: ${report.changed.join(', ')}\n`);
        return EXIT_OK;
      }
      case 'uninstall': {
        const { values } = parseFlags(UNINSTALL_SPEC, rest);
        const removed = await uninstallCni({ binDir: values['cni-bin-dir'] ?? '/host/opt/cni/bin', confDir: values['cni-conf-dir'] ?? '/host/etc/cni/net.d' });
        ctx.stdout.write(removed.length === 0 ? 'trellis-cni was not installed\n' : `trellis-cni removed: ${removed.join(', ')}\n`);
        return EXIT_OK;
      }
      case 'node-agent':
        return nodeAgent(rest, ctx);
      default:
        ctx.stdout.write(USAGE);
        return name === '--help' || name === '-h' || name === 'help' ? EXIT_OK : EXIT_USAGE;
    }
  },
};
