/**
 * `trellis injector run`: the mutating admission webhook that adds the sidecar to new pods.
 * `trellis injector wait-ready`: the classic layout's post-start hook, which holds the app back until
 * the sidecar's status port says ready.
 * This file reads argv, the environment and the kubeconfig; everything below receives values.
 */
import { hostname } from 'node:os';
import { readFile } from 'node:fs/promises';
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig, VersionApi } from '@kubernetes/client-node';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { InputError, describeError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';
import { createLogger, type Logger } from '../common/log.js';
import { WebhookCaBundleSync } from '../injector/ca-bundle-sync.js';
import { createInjectorConfig, parseKubernetesVersion, type KubernetesVersion } from '../injector/config.js';
import { KubernetesEventSink } from '../injector/events.js';
import { startInjector } from '../injector/injector.js';
import { detectKubernetesVersion } from '../injector/kubernetes-version.js';
import { createInjectorMetrics, type InjectorMetrics } from '../injector/metrics.js';
import { checkServingNames, serviceDnsNames } from '../injector/serving-certificate-issuer.js';
import { FileServingSource, IssuedServingSource, issuerFromDirectory, type ServingCertificateSource } from '../injector/serving-certificate.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { parseListen, parseLogLevel, untilSignal } from './control.js';
import { attemptInto, limitFlag } from './flag-problems.js';
import { INJECTOR_LIMIT_SCHEMA, INJECTOR_LIMITS } from '../injector/limits.js';
import { formatLimit } from '../common/limit-schema.js';
import { REQUIRED, formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { CODE } from '../common/error-codes.js';
import { makeTrellisApiClient } from '../common/kubernetes-client.js';
import { TRELLIS_VERSION } from '../common/version.js';
import { ApiNamespaceDirectory } from '../injector/namespace-facts.js';

/** Recorded in each injected pod's status annotation. */
export const INJECTOR_VERSION = TRELLIS_VERSION;

const RUN_SPEC = {
  usage: 'trellis injector run (--cert FILE --key FILE | --issuer-dir DIR) --image IMAGE [options]',
  about: `Serves the Kubernetes mutating admission webhook (admission.k8s.io/v1) that adds the Trellis sidecar,
its capture init container and its identity volumes to new pods (see deploy/kubernetes/).
The serving certificate is --cert and --key (written by someone else, re-read when they change), or
issued by the injector itself from --issuer-dir and renewed at 2/3 of its lifetime.`,
  flags: {
    cert: { type: 'string', value: 'FILE', help: 'serving certificate chain (with --key)', whenAbsent: 'none: --issuer-dir' },
    key: { type: 'string', value: 'FILE', help: 'its key (with --cert)', whenAbsent: 'none: --issuer-dir' },
    'ca-bundle': { type: 'string', value: 'FILE', help: "with --cert: the CA that signed it, for the webhook's caBundle", whenAbsent: 'the last certificate of --cert' },
    'issuer-dir': { type: 'string', value: 'DIR', help: 'the mesh CA (ca.crt, ca.key, bundle.pem, e.g. a mounted Secret): the injector\nissues its own serving certificate', whenAbsent: 'none: --cert/--key' },
    'cert-ttl': { type: 'string', value: 'DURATION', help: 'lifetime of an issued certificate', whenAbsent: '24h' },
    service: { type: 'string', value: 'NAME', help: 'Service in front of the webhook, for the DNS names', whenAbsent: 'trellis-injector' },
    namespace: { type: 'string', value: 'NS', help: 'its namespace', whenAbsent: 'trellis-system' },
    image: { type: 'string', value: 'IMAGE', help: 'the Trellis image for the sidecar and init container', whenAbsent: REQUIRED },
    'image-pull-policy': { type: 'string', value: 'P', help: 'Always|IfNotPresent|Never', whenAbsent: 'IfNotPresent' },
    'control-url': { type: 'string', value: 'URL', help: 'the control plane agents dial', whenAbsent: 'https://trellis-control.<namespace>.svc:15012' },
    'trust-bundle': { type: 'string', value: 'FILE', help: 'mesh roots the agents verify the control plane with', whenAbsent: 'bundle.pem of --issuer-dir, or --ca-bundle' },
    zone: { type: 'string', value: 'NAME', help: "this cluster's zone", whenAbsent: 'default' },
    'capture-mode': { type: 'string', value: 'init|cni', help: "how pods get their redirect rules: a privileged init container, or the\nTrellis CNI plugin (pods then pass Pod Security restricted); a namespace's\ntrellis.dev/capture-mode label overrides it", whenAbsent: 'init' },
    'proxy-uid': { type: 'string', value: 'N', help: "the sidecar's user", whenAbsent: '1337' },
    'proxy-gid': { type: 'string', value: 'N', help: "the sidecar's group", whenAbsent: '1337' },
    'token-ttl': { type: 'string', value: 'DURATION', help: 'projected token lifetime, 10m to 24h', whenAbsent: formatLimit(INJECTOR_LIMITS.tokenExpirationSeconds, 's') },
    'kubernetes-version': { type: 'string', value: 'V', help: 'auto (ask the API server) or e.g. 1.30: native sidecars from 1.29', whenAbsent: 'auto' },
    'exclude-namespace': { type: 'string', multiple: true, value: 'NS', help: 'never inject NS (repeatable; kube-system, kube-public, kube-node-lease and\ntrellis-system always are)', whenAbsent: 'none' },
    listen: { type: 'string', value: 'HOST:PORT', help: "the webhook's HTTPS listener", whenAbsent: '0.0.0.0:9443' },
    port: { type: 'string', value: 'N', help: 'shorthand for --listen 0.0.0.0:N', whenAbsent: 'none' },
    admin: { type: 'string', value: 'HOST:PORT|off', help: '/healthz /ready /metrics, plaintext', whenAbsent: '0.0.0.0:15019' },
    'webhook-config': { type: 'string', value: 'NAME|off', help: 'MutatingWebhookConfiguration whose caBundle is kept current', whenAbsent: 'trellis-injector' },
    kubeconfig: { type: 'string', value: 'FILE', help: 'API access', whenAbsent: 'in-cluster, then $KUBECONFIG or ~/.kube/config' },
    'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|silent', whenAbsent: 'info' },
  },
} as const satisfies CommandSpec;

const RUN_USAGE = formatHelp(RUN_SPEC);

const WAIT_SPEC = {
  usage: 'trellis injector wait-ready [--url URL] [--timeout DURATION] [--interval DURATION]',
  about: `Polls URL until it answers 200, then exits 0; exits 1 when the timeout passes first. The injected
classic-layout sidecar runs this as its post-start hook, so the app containers start only once the proxy
is ready.`,
  flags: {
    url: { type: 'string', value: 'URL', help: 'the readiness URL', whenAbsent: 'http://127.0.0.1:15020/ready' },
    timeout: { type: 'string', value: 'DURATION', help: 'give up after', whenAbsent: '2m' },
    interval: { type: 'string', value: 'DURATION', help: 'between polls', whenAbsent: '500ms' },
  },
} as const satisfies CommandSpec;

const WAIT_USAGE = formatHelp(WAIT_SPEC);

function parseIntFlag(value: string | undefined, what: string, fallback: number, problems: string[]): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) {
    problems.push(`${what}: "${value}" is not a number`);
    return fallback;
  }
  return Number(value);
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new InputError(CODE.CLI_UNREADABLE, `${what}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? describeError(err)})`);
  }
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path !== undefined) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new InputError(CODE.K8S_KUBECONFIG_INVALID, `cannot load the kubeconfig${path === undefined ? '' : ` ${path}`}: ${describeError(err)}`);
  }
  if (kc.getCurrentCluster() === null) throw new InputError(CODE.K8S_KUBECONFIG_INVALID, 'no Kubernetes cluster configured (not in a pod, no kubeconfig); pass --kubeconfig');
  return kc;
}

/** `injector run`'s flags, every problem at once (exit 2). */
function parseRunOptions(argv: readonly string[]) {
  const { values, positionals } = parseFlags(RUN_SPEC, argv);
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${RUN_USAGE}`);
  const problems: string[] = [];
  const fileMode = values.cert !== undefined || values.key !== undefined;
  if (fileMode && values['issuer-dir'] !== undefined) problems.push('give either --cert/--key or --issuer-dir, not both');
  if (fileMode && (values.cert === undefined || values.key === undefined)) problems.push('--cert and --key go together');
  if (!fileMode && values['issuer-dir'] === undefined) problems.push('a serving certificate is required: --cert FILE --key FILE, or --issuer-dir DIR');
  if (values['ca-bundle'] !== undefined && !fileMode) problems.push('--ca-bundle goes with --cert/--key');
  const attempt = attemptInto(problems, describeError);
  const service = values.service ?? 'trellis-injector';
  const namespace = values.namespace ?? 'trellis-system';
  const dnsNames = attempt(() => checkServingNames(serviceDnsNames(service, namespace)), []);
  const certTtlMs = attempt(() => parseDuration(values['cert-ttl'] ?? '24h', '--cert-ttl'), 86_400_000);
  const tokenTtlSeconds = limitFlag(values['token-ttl'], INJECTOR_LIMIT_SCHEMA.tokenExpirationSeconds, '--token-ttl', attempt);
  const listen =
    values.port !== undefined
      ? { host: '0.0.0.0', port: parseIntFlag(values.port, '--port', 9443, problems) }
      : attempt(() => parseListen(values.listen ?? '0.0.0.0:9443', '--listen'), { host: '0.0.0.0', port: 9443 });
  const admin = values.admin === 'off' ? undefined : attempt(() => parseListen(values.admin ?? '0.0.0.0:15019', '--admin'), undefined);
  const level = attempt(() => parseLogLevel(values['log-level']), 'info' as const);
  const versionText = values['kubernetes-version'] ?? 'auto';
  const fixedVersion: KubernetesVersion | undefined = versionText === 'auto' ? undefined : attempt(() => parseKubernetesVersion(versionText), undefined);
  const proxyUid = parseIntFlag(values['proxy-uid'], '--proxy-uid', 1337, problems);
  const proxyGid = parseIntFlag(values['proxy-gid'], '--proxy-gid', 1337, problems);
  if (values.image === undefined) problems.push('--image is required (the Trellis image the sidecar runs)');
  if (problems.length > 0) throw new InputError(CODE.CLI_INJECTOR_OPTIONS, `invalid options:\n  - ${problems.join('\n  - ')}\n\n${RUN_USAGE}`);
  return { values, image: values.image as string, namespace, dnsNames, certTtlMs, tokenTtlSeconds, listen, admin, level, fixedVersion, proxyUid, proxyGid };
}

type RunOptions = ReturnType<typeof parseRunOptions>;

function servingSource(options: RunOptions, logger: Logger, metrics: InjectorMetrics): ServingCertificateSource {
  const { values } = options;
  const issuerDir = values['issuer-dir'];
  return issuerDir !== undefined
    ? new IssuedServingSource({ loadIssuer: issuerFromDirectory(issuerDir), dnsNames: options.dnsNames, ttlMs: options.certTtlMs, logger, metrics })
    : new FileServingSource({ certFile: values.cert as string, keyFile: values.key as string, ...(values['ca-bundle'] === undefined ? {} : { caBundleFile: values['ca-bundle'] }), logger, metrics });
}

/** The agents' trust bundle: given, or the issuer's roots (then it follows the issuer at each renewal). */
async function agentTrustBundle(values: RunOptions['values']): Promise<string> {
  const explicitTrustBundle = values['trust-bundle'] ?? values['ca-bundle'];
  if (explicitTrustBundle !== undefined) return readText(explicitTrustBundle, values['trust-bundle'] === undefined ? '--ca-bundle' : '--trust-bundle');
  const issuerDir = values['issuer-dir'];
  if (issuerDir !== undefined) {
    const issuer = await issuerFromDirectory(issuerDir)();
    if (issuer.bundlePem === undefined) throw new InputError(CODE.CLI_INJECTOR_OPTIONS, `${issuerDir}/bundle.pem is missing: the agents need the mesh roots (or pass --trust-bundle)`);
    return issuer.bundlePem;
  }
  throw new InputError(CODE.CLI_INJECTOR_OPTIONS, 'with --cert/--key, pass --ca-bundle or --trust-bundle: the agents need the mesh roots');
}

/** The Kubernetes API, when the version is detected or the webhook's caBundle is synced; and the version. */
async function kubernetesAccess(options: RunOptions, webhookConfig: string, logger: Logger): Promise<{ kc: KubeConfig | undefined; kubernetesVersion: KubernetesVersion }> {
  const kubeconfig = options.values.kubeconfig;
  const needsApi = options.fixedVersion === undefined || webhookConfig !== 'off';
  const kc = needsApi ? loadKubeConfig(kubeconfig) : kubeconfig === undefined ? undefined : loadKubeConfig(kubeconfig);
  const kubernetesVersion = options.fixedVersion ?? (await detectKubernetesVersion(makeTrellisApiClient(kc as KubeConfig, VersionApi, 'injector')));
  logger.info({ kubernetesVersion, nativeSidecars: kubernetesVersion.minor >= 29 || kubernetesVersion.major > 1 }, 'Kubernetes version');
  return { kc, kubernetesVersion };
}

async function run(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const options = parseRunOptions(argv);
  const { values } = options;
  const logger = createLogger({ name: 'trellis-injector', level: options.level });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = createInjectorMetrics(registry);
  const source = servingSource(options, logger, metrics);
  const trustBundlePem = await agentTrustBundle(values);
  const webhookConfig = values['webhook-config'] ?? 'trellis-injector';
  const { kc, kubernetesVersion } = await kubernetesAccess(options, webhookConfig, logger);
  const config = createInjectorConfig({
    image: options.image,
    imagePullPolicy: values['image-pull-policy'] ?? 'IfNotPresent',
    controlUrl: values['control-url'] ?? `https://trellis-control.${options.namespace}.svc:15012`,
    zone: values.zone ?? 'default',
    trustBundlePem,
    proxyUid: options.proxyUid,
    proxyGid: options.proxyGid,
    tokenExpirationSeconds: options.tokenTtlSeconds,
    kubernetesVersion,
    extraExcludedNamespaces: values['exclude-namespace'] ?? [],
    version: INJECTOR_VERSION,
    captureMode: values['capture-mode'] ?? 'init',
  });
  if (kc === undefined) logger.warn('no Kubernetes API configured: skipped pods are counted and logged, but not reported as Events');
  const events =
    kc === undefined
      ? { report: () => undefined }
      : new KubernetesEventSink({ api: makeTrellisApiClient(kc, CoreV1Api, 'injector'), metrics, logger, instance: ctx.env.POD_NAME ?? hostname() });
  const caBundleSync = kc === undefined || webhookConfig === 'off' ? undefined : new WebhookCaBundleSync({ api: makeTrellisApiClient(kc, AdmissionregistrationV1Api, 'injector'), name: webhookConfig, logger, metrics });
  if (kc === undefined) logger.warn('no Kubernetes API configured: namespaces are not read, so Pod Security levels and capture-mode labels are not honoured');
  const namespaces = kc === undefined ? undefined : new ApiNamespaceDirectory({ api: makeTrellisApiClient(kc, CoreV1Api, 'injector') });

  let running;
  try {
    running = await startInjector({
      config,
      trustBundleFromServing: (values['trust-bundle'] ?? values['ca-bundle']) === undefined,
      source,
      ...(caBundleSync === undefined ? {} : { caBundleSync }),
      events,
      metrics,
      registry,
      logger,
      listen: options.listen,
      ...(options.admin === undefined ? {} : { admin: options.admin }),
      ...(namespaces === undefined ? {} : { namespaces }),
    });
  } catch (err) {
    ctx.stderr.write(`trellis injector: cannot start: ${describeError(err)}\n`);
    logger.flush();
    return EXIT_FAILURE;
  }
  ctx.stdout.write(`${JSON.stringify({ event: 'ready', webhook: running.webhook.port, admin: running.admin?.port ?? null })}\n`);
  const signal = await untilSignal();
  logger.info({ signal }, 'shutting down');
  await running.stop();
  logger.flush();
  return EXIT_OK;
}

async function waitReady(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(WAIT_SPEC, argv);
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${WAIT_USAGE}`);
  const url = values.url ?? 'http://127.0.0.1:15020/ready';
  if (!/^https?:\/\//.test(url)) throw new InputError(CODE.CLI_BAD_URL, `--url: "${url}" is not an http:// URL`);
  const timeoutMs = parseDuration(values.timeout ?? '2m', '--timeout');
  const intervalMs = parseDuration(values.interval ?? '500ms', '--interval');
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(100, Math.min(2_000, deadline - Date.now()))) });
      await res.arrayBuffer();
      if (res.status === 200) return EXIT_OK;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = describeError((err as { cause?: unknown }).cause ?? err);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(intervalMs, deadline - Date.now()))));
  }
  ctx.stderr.write(`trellis injector wait-ready: ${url} not ready after ${values.timeout ?? '2m'} (last: ${last})\n`);
  return EXIT_FAILURE;
}

const USAGE = `Usage: trellis injector <run|wait-ready> [options]

  run          serve the mutating admission webhook that injects the sidecar
  wait-ready   wait until the sidecar is ready (the classic layout's post-start hook)

Run \`trellis injector <subcommand> --help\` for its options.
`;

export const injectorCommand: Command = {
  name: 'injector',
  usage: USAGE,
  forms: { run: RUN_SPEC, 'wait-ready': WAIT_SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [name, ...rest] = argv;
    if (name === 'run' || name === 'wait-ready') {
      return name === 'run' ? run(rest, ctx) : waitReady(rest, ctx);
    }
    ctx.stdout.write(USAGE);
    return name === '--help' || name === '-h' || name === 'help' ? EXIT_OK : EXIT_USAGE;
  },
};
