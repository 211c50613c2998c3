/**
 * The multi-zone flags of `trellis control run`: `--mode global` (the global control plane) and
 * `--global URL --zone NAME` (a zone that joins one). The flag table is spread into control.ts's, so one
 * `--help` lists everything; each mode refuses the other's flags.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseDuration } from '../common/duration.js';
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import type { Logger } from '../common/log.js';
import { parseTrustDomain } from '../ca/spiffe-id.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { CONTROL_DEFAULTS, type ControlPlaneConfig, type ListenAddress } from '../control/config.js';
import { zoneCaDir } from '../control/zone-sync/global-client.js';
import { GLOBAL_DEFAULTS, type GlobalControlConfig } from '../control/global/global-config.js';
import { startGlobalControlPlane, type RunningGlobal } from '../control/global/global-plane.js';
import type { ZoneGlobalConfig } from '../control/zone-sync/attach.js';
import { parseExportRule } from '../control/zone-sync/exports.js';
import { attemptInto } from './flag-problems.js';
import type { FlagTable } from './flag-spec.js';

export const MULTIZONE_FLAGS = {
  store: { type: 'string', value: 'URL', help: 'global mode: postgres://USER@HOST:PORT/DB for PostgreSQL (several replicas,\none leader) instead of the file store in --data-dir', whenAbsent: 'the file store' },
  'zone-lease': { type: 'string', value: 'DURATION', help: 'global mode: a zone silent this long goes offline; its services leave\nevery catalogue (reason zone-offline)', whenAbsent: '30s' },
  'export-default': { type: 'string', value: 'all|none', help: 'global mode: whether services a zone has no --export/--no-export rule for\nare exported', whenAbsent: 'all' },
  global: { type: 'string', multiple: true, value: 'URL', help: 'join this global control plane as zone --zone, e.g. https://global:15020;\ngive each replica\'s URL (PostgreSQL store): the zone moves on to the next', whenAbsent: 'a single zone' },
  'global-ca': { type: 'string', value: 'FILE', help: "with --global: the global's trust bundle (its <data-dir>/trust-bundle.pem)", whenAbsent: 'required with --global' },
  'global-token-file': { type: 'string', value: 'FILE', help: 'with --global: the zone token (`trellis zone token create --zone NAME`);\nneeded for the first join only', whenAbsent: 'the identity kept in --data-dir' },
  'global-max-staleness': { type: 'string', value: 'DURATION', help: "with --global: withdraw other zones' services once the global has been\nunreachable this long", whenAbsent: 'unlimited' },
  export: { type: 'string', multiple: true, value: 'NS/NAME|NS/*', help: 'with --global: export this service (or namespace) to other zones', whenAbsent: "the global's --export-default" },
  'no-export': { type: 'string', multiple: true, value: 'NS/NAME|NS/*', help: 'with --global: never export this service (or namespace)', whenAbsent: 'none' },
  'ingress-address': { type: 'string', multiple: true, value: 'HOST:PORT', help: "with --global: this zone's ingress, as other zones reach it", whenAbsent: 'none' },
} as const satisfies FlagTable;

type Values = Record<string, string | boolean | string[] | undefined>;

const str = (v: Values, name: string): string | undefined => v[name] as string | undefined;
const list = (v: Values, name: string): string[] => (v[name] as string[] | undefined) ?? [];

function readFile(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new InputError(CODE.CLI_UNREADABLE, `${flag}: cannot read ${path} (${(err as Error).message})`);
  }
}

function httpsUrl(text: string, flag: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InputError(CODE.CLI_BAD_URL, `${flag}: "${text}" is not a URL (e.g. https://global.example:15020)`);
  }
  if (url.protocol !== 'https:') throw new InputError(CODE.CLI_BAD_URL, `${flag} must be an https:// URL`);
  return url;
}

/** `--global` and its companions for a zone control plane; problems are added to `problems`. */
export function parseZoneGlobal(values: Values, problems: string[]): ZoneGlobalConfig | undefined {
  const attempt = attemptInto(problems);
  const urls = list(values, 'global');
  for (const flag of ['store', 'zone-lease', 'export-default']) if (values[flag] !== undefined) problems.push(`--${flag} is for --mode global`);
  if (urls.length === 0) {
    for (const flag of ['global-ca', 'global-token-file', 'global-max-staleness', 'export', 'no-export', 'ingress-address']) if (values[flag] !== undefined) problems.push(`--${flag} needs --global URL`);
    return undefined;
  }
  const caFile = str(values, 'global-ca');
  if (caFile === undefined) problems.push('--global needs --global-ca FILE (the global\'s trust bundle)');
  const tokenFile = str(values, 'global-token-file');
  const staleness = str(values, 'global-max-staleness');
  return Object.freeze({
    urls: Object.freeze(urls.map((u) => attempt(() => httpsUrl(u, '--global'), new URL('https://invalid')))),
    bundlePem: caFile === undefined ? '' : attempt(() => readFile(resolve(caFile), '--global-ca'), ''),
    token: tokenFile === undefined ? undefined : attempt(() => readFile(resolve(tokenFile), '--global-token-file'), ''),
    maxStalenessMs: staleness === undefined ? undefined : attempt(() => parseDuration(staleness, '--global-max-staleness'), 0),
    exportRules: Object.freeze({
      exported: list(values, 'export').map((r) => attempt(() => parseExportRule(r, '--export'), r)),
      hidden: list(values, 'no-export').map((r) => attempt(() => parseExportRule(r, '--no-export'), r)),
    }),
    ingressAddresses: Object.freeze(list(values, 'ingress-address').map((a) => {
      if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):([1-9]\d{0,4})$/.test(a) || Number(a.slice(a.lastIndexOf(':') + 1)) > 65535) problems.push(`--ingress-address: "${a}" is not HOST:PORT`);
      return a;
    })),
  });
}

/** `--mode global`'s configuration; zone-only flags are refused. */
export function parseGlobalConfig(values: Values, listenOf: (text: string, what: string) => ListenAddress, problems: string[]): GlobalControlConfig {
  const attempt = attemptInto(problems);
  for (const flag of ['global', 'global-ca', 'global-token-file', 'global-max-staleness', 'export', 'no-export', 'ingress-address', 'kubeconfig', 'kube-context']) {
    if (values[flag] !== undefined) problems.push(`--${flag} is not for --mode global`);
  }
  const store = str(values, 'store');
  if (store !== undefined && (values.listen === undefined || /:0$/.test(str(values, 'listen') as string))) problems.push('--store: replicas need a fixed --listen HOST:PORT (a follower opens it when it becomes the leader)');
  if (store !== undefined && !/^postgres(?:ql)?:\/\//.test(store)) problems.push('--store: expected a postgres://... URL (the file store needs no flag)');
  const exportDefault = str(values, 'export-default') ?? GLOBAL_DEFAULTS.exportDefault;
  if (exportDefault !== 'all' && exportDefault !== 'none') problems.push(`--export-default: "${exportDefault}" is not all or none`);
  const rootNamespace = str(values, 'root-namespace') ?? CONTROL_DEFAULTS.rootNamespace;
  if (!DNS_LABEL.test(rootNamespace)) problems.push(`--root-namespace: "${rootNamespace}" must be a DNS label`);
  const lease = str(values, 'zone-lease');
  return Object.freeze({
    dataDir: resolve(str(values, 'data-dir') ?? '.'),
    store,
    caDir: str(values, 'ca-dir') === undefined ? undefined : resolve(str(values, 'ca-dir') as string),
    policyDir: str(values, 'policy') === undefined ? undefined : resolve(str(values, 'policy') as string),
    trustDomain: attempt(() => parseTrustDomain(str(values, 'trust-domain') ?? CONTROL_DEFAULTS.trustDomain), ''),
    rootNamespace,
    listen: attempt(() => listenOf(str(values, 'listen') ?? `0.0.0.0:${GLOBAL_DEFAULT_PORT}`, '--listen'), { host: '0.0.0.0', port: GLOBAL_DEFAULT_PORT }),
    admin: attempt(() => listenOf(str(values, 'admin') ?? `127.0.0.1:${GLOBAL_DEFAULT_ADMIN_PORT}`, '--admin'), { host: '127.0.0.1', port: GLOBAL_DEFAULT_ADMIN_PORT }),
    zoneLeaseMs: lease === undefined ? GLOBAL_DEFAULTS.zoneLeaseMs : attempt(() => parseDuration(lease, '--zone-lease'), 0),
    exportDefault: exportDefault === 'none' ? 'none' : 'all',
    zoneCertTtlMs: GLOBAL_DEFAULTS.zoneCertTtlMs,
  });
}

/** The global's API port (zones dial it) and admin port, beside the zone control plane's 15012/15014. */
export const GLOBAL_DEFAULT_PORT = 15020;
export const GLOBAL_DEFAULT_ADMIN_PORT = 15021;

/**
 * A zone joining a global without its own `--ca-dir` signs with an intermediate under the mesh root,
 * fetched at its first join (kept in <data-dir>/global/ca): one root for every zone.
 */
export async function withZoneCa(config: ControlPlaneConfig): Promise<ControlPlaneConfig> {
  const global = config.global;
  if (global === undefined || config.caDir !== undefined) return config;
  let failure: unknown;
  // Each replica in turn: a follower opens no API listener.
  for (const url of global.urls) {
    try {
      const caDir = await zoneCaDir({ url, trustDomain: config.trustDomain, rootNamespace: config.rootNamespace, bundlePem: global.bundlePem }, config.dataDir, config.zone, global.token);
      return caDir === undefined ? config : Object.freeze({ ...config, caDir });
    } catch (err) {
      failure = err;
    }
  }
  throw failure;
}

/** Opens the store the config names and starts the global control plane on it. */
export async function runGlobal(config: GlobalControlConfig, log: Logger): Promise<Pick<RunningGlobal, 'apiAddress' | 'adminAddress' | 'close'>> {
  if (config.store !== undefined) {
    const { startReplicatedGlobal } = await import('../control/global/postgres-replica.js');
    return startReplicatedGlobal(config, log);
  }
  const { GlobalFileStore } = await import('../control/global/global-store.js');
  return startGlobalControlPlane(config, await GlobalFileStore.open(config.dataDir), log);
}
