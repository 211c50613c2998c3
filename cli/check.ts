/**
 * `trellis check`: is this mesh healthy, and if not, what to do (like `linkerd check` and `istioctl
 * analyze`). Against a control plane's admin API (VMs), against a cluster (kubeconfig), or both. Prints
 * one line per finding with its fix, or JSON; exits 1 when anything failed (warnings do not fail).
 */
import { readFile } from 'node:fs/promises';
import { InputError, describeError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { parseDuration } from '../common/duration.js';
import { EXIT_FAILURE, EXIT_OK, type Command, type CommandContext } from './command.js';
import { formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { formatFindings, type Finding } from './check-findings.js';
import { controlFindings } from './check-control.js';

const SPEC = {
  usage: 'trellis check [--control-admin URL] [--control-api HOST:PORT] [--kubeconfig FILE] [options]',
  about: `Checks a Trellis mesh and says how to fix what is wrong: the control plane reachable and ready, its
policies valid, certificates and the trust bundle valid and not near expiry, agents on the current config
version (VMs); on Kubernetes also the injector, its webhook's caBundle, the CNI node agent, and whether each
namespace labelled for injection can admit injected pods under its Pod Security level and capture mode.`,
  flags: {
    'control-admin': { type: 'string', value: 'URL', help: "the control plane's admin API, e.g. http://127.0.0.1:15014", whenAbsent: 'not checked' },
    'control-api': { type: 'string', value: 'HOST:PORT', help: "the control plane's TLS API, to check its serving certificate", whenAbsent: 'not checked' },
    'ca-file': { type: 'string', value: 'FILE', help: 'the mesh trust bundle (roots)', whenAbsent: 'certificates are checked for expiry only' },
    agent: { type: 'string', multiple: true, value: 'URL', help: "an agent's admin URL (repeatable): its config version against the control plane's", whenAbsent: 'none' },
    kubeconfig: { type: 'string', value: 'FILE', help: 'check this cluster', whenAbsent: 'no Kubernetes checks' },
    context: { type: 'string', value: 'NAME', help: 'kubeconfig context', whenAbsent: 'its current context' },
    namespace: { type: 'string', value: 'NS', help: "Trellis's own namespace", whenAbsent: 'trellis-system' },
    'warn-within': { type: 'string', value: 'DURATION', help: 'warn about certificates expiring within', whenAbsent: '30d' },
    timeout: { type: 'string', value: 'DURATION', help: 'per request', whenAbsent: '5s' },
    output: { type: 'string', value: 'text|json', help: 'output format', whenAbsent: 'text' },
  },
  footer: 'Exit status: 0 nothing failed (warnings allowed), 1 something failed, 2 bad options.',
} as const satisfies CommandSpec;

async function run(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values } = parseFlags(SPEC, argv);
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new InputError(CODE.CLI_USAGE, `--output: "${output}" is text or json`);
  if (values['control-admin'] === undefined && values.kubeconfig === undefined) throw new InputError(CODE.CLI_USAGE, 'nothing to check: give --control-admin URL (VMs), --kubeconfig FILE (Kubernetes), or both');
  const warnDays = Math.floor(parseDuration(values['warn-within'] ?? '30d', '--warn-within') / 86_400_000);
  const timeoutMs = parseDuration(values.timeout ?? '5s', '--timeout');
  let trustBundlePem: string | undefined;
  if (values['ca-file'] !== undefined) {
    trustBundlePem = await readFile(values['ca-file'], 'utf8').catch((err: unknown) => {
      throw new InputError(CODE.CLI_UNREADABLE, `--ca-file: cannot read ${values['ca-file']} (${describeError(err)})`);
    });
  }
  const now = new Date();
  const findings: Finding[] = [];
  if (values['control-admin'] !== undefined) {
    if (!/^https?:\/\//.test(values['control-admin'])) throw new InputError(CODE.CLI_BAD_URL, `--control-admin: "${values['control-admin']}" is not an http(s):// URL`);
    findings.push(
      ...(await controlFindings({
        adminUrl: values['control-admin'],
        ...(values['control-api'] === undefined ? {} : { apiAddress: values['control-api'] }),
        ...(trustBundlePem === undefined ? {} : { trustBundlePem }),
        agentAdminUrls: values.agent ?? [],
        now,
        warnDays,
        timeoutMs,
      })),
    );
  }
  if (values.kubeconfig !== undefined) {
    const [{ loadKubeConfig }, { kubernetesFindings }] = await Promise.all([import('../control/kubernetes/kube-config.js'), import('./check-kubernetes.js')]);
    const kc = loadKubeConfig({ kind: 'kubeconfig', path: values.kubeconfig, ...(values.context === undefined ? {} : { context: values.context }) });
    findings.push(...(await kubernetesFindings({ kc, systemNamespace: values.namespace ?? 'trellis-system', ...(trustBundlePem === undefined ? {} : { trustBundlePem }), now, warnDays })));
  }
  ctx.stdout.write(output === 'json' ? `${JSON.stringify({ findings }, null, 2)}\n` : formatFindings(findings));
  return findings.some((f) => f.severity === 'fail') ? EXIT_FAILURE : EXIT_OK;
}

export const checkCommand: Command = {
  name: 'check',
  usage: formatHelp(SPEC),
  forms: { '': SPEC },
  run,
};
