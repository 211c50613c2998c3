/**
 * `trellis token create|revoke|list`: join tokens for VM workloads. Two ways to reach the tokens:
 * through a running control plane's API with the admin credential (`--control URL`), or offline on
 * the data dir (`--data-dir DIR` alone), which works with the control plane running or stopped because
 * every token use reads its record from the store.
 */
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import { parseDuration } from '../common/duration.js';
import { InputError } from '../common/errors.js';
import { CONTROL_PATHS, type CreateTokenResponse, type TokenRecordView } from '../api/control-protocol.js';
import { controlRequest, type ControlEndpoint } from '../api/control-client.js';
import { FileStore } from '../control/file-store.js';
import { readDataDirIdentity } from '../control/identity-file.js';
import { refuseReservedToken } from '../control/reserved-identity.js';
import { DEFAULT_TOKEN_USES, MAX_TOKEN_USES, TokenService } from '../control/token-service.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { INGRESS_SERVICE } from '../api/zone-ingress.js';
import { CODE } from '../common/error-codes.js';

const SPEC = {
  usage: `trellis token create --service S [--namespace N] [--ttl 1h] [--uses 1] [--output FILE] TARGET
       trellis token create --ingress [--ttl 1h] [--uses 1] [--output FILE] TARGET
       trellis token revoke ID TARGET
       trellis token list TARGET`,
  about: `TARGET is one of:
  --data-dir DIR                       offline, on the control plane's data dir
  --control URL --admin-token-file F --ca-file F
                                       through the API, with the admin credential (<data-dir>/admin-token)
                                       and the trust bundle (<data-dir>/trust-bundle.pem)

create prints the token on stdout (or writes it to --output, mode 0600) and its id on stderr.
--uses N: how many bootstraps the token allows (each VM that joins spends one); revoking it also
revokes the certificates issued through it.
--ingress: a token for the zone ingress (\`trellis ingress run\`), <root-namespace>/trellis-ingress: the
only way a join token carries that identity (a --service token for it is refused).`,
  flags: {
    service: { type: 'string', value: 'S', help: 'create: the service the token admits', whenAbsent: 'required by create, unless --ingress' },
    ingress: { type: 'boolean', help: "create: a token for the zone ingress's identity (<root-namespace>/trellis-ingress)", whenAbsent: 'a workload token' },
    namespace: { type: 'string', value: 'N', help: "create: the service's namespace", whenAbsent: 'default' },
    ttl: { type: 'string', value: 'DURATION', help: 'create: how long the token may be used', whenAbsent: '1h' },
    uses: { type: 'string', value: 'N', help: 'create: how many bootstraps the token allows (1 to 10,000)', whenAbsent: '1' },
    output: { type: 'string', value: 'FILE', help: 'create: write the token to FILE (mode 0600) instead of stdout', whenAbsent: 'stdout' },
    'data-dir': { type: 'string', value: 'DIR', help: "the control plane's data dir (offline), or where --control's\ncredential and bundle are", whenAbsent: 'none' },
    control: { type: 'string', value: 'URL', help: 'a running control plane, e.g. https://10.0.0.5:15012', whenAbsent: 'none: offline' },
    'admin-token-file': { type: 'string', value: 'FILE', help: 'with --control: the admin credential', whenAbsent: '<data-dir>/admin-token' },
    'ca-file': { type: 'string', value: 'FILE', help: "with --control: the control plane's trust bundle", whenAbsent: '<data-dir>/trust-bundle.pem' },
    'root-namespace': { type: 'string', value: 'NS', help: "with --control: the mesh's root namespace", whenAbsent: DEFAULT_ROOT_NAMESPACE },
  },
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);

interface Target {
  readonly offline?: TokenService;
  readonly online?: { endpoint: ControlEndpoint; adminToken: string };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return (await fs.readFile(path, 'utf8')).trim();
  } catch (err) {
    throw new InputError(CODE.CLI_UNREADABLE, `${what}: cannot read ${path} (${(err as Error).message})`);
  }
}

function adminCredential(text: string, file: string): string {
  if (!/^[A-Za-z0-9_-]{16,256}$/.test(text)) throw new InputError(CODE.CLI_BAD_ADMIN_TOKEN, `--admin-token-file: ${file} does not hold an admin credential (expected the one line of <data-dir>/admin-token)`);
  return text;
}

async function targetOf(values: Record<string, string | boolean | undefined>): Promise<Target> {
  const dataDir = values['data-dir'] as string | undefined;
  const control = values.control as string | undefined;
  if (control !== undefined) {
    let url: URL;
    try {
      url = new URL(control);
    } catch {
      throw new InputError(CODE.CLI_BAD_URL, `--control: "${control}" is not a URL (e.g. https://10.0.0.5:15012)`);
    }
    if (url.protocol !== 'https:') throw new InputError(CODE.CLI_BAD_URL, '--control must be an https:// URL');
    const adminFile = (values['admin-token-file'] as string | undefined) ?? (dataDir === undefined ? undefined : join(dataDir, 'admin-token'));
    const caFile = (values['ca-file'] as string | undefined) ?? (dataDir === undefined ? undefined : join(dataDir, 'trust-bundle.pem'));
    if (adminFile === undefined || caFile === undefined) throw new InputError(CODE.CLI_USAGE, '--control needs --admin-token-file and --ca-file (or --data-dir)');
    return {
      online: {
        endpoint: { url, trustBundlePem: await readText(caFile, '--ca-file'), rootNamespace: (values['root-namespace'] as string | undefined) ?? DEFAULT_ROOT_NAMESPACE },
        adminToken: adminCredential(await readText(adminFile, '--admin-token-file'), adminFile),
      },
    };
  }
  if (dataDir === undefined) throw new InputError(CODE.CLI_USAGE, `give --data-dir DIR, or --control URL with the admin credential\n\n${USAGE}`);
  const identity = await readDataDirIdentity(resolve(dataDir));
  if (identity === undefined) throw new InputError(CODE.CLI_NOT_A_DATA_DIR, `${dataDir} is not a control plane data dir (no control.json); start \`trellis control run --data-dir ${dataDir}\` once first`);
  return { offline: new TokenService(await FileStore.open(resolve(dataDir)), identity.trustDomain, Date.now, identity.rootNamespace) };
}

export const tokenCommand: Command = {
  name: 'token',
  usage: USAGE,
  forms: { '': SPEC, create: SPEC, revoke: SPEC, list: SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const { values, positionals } = parseFlags(SPEC, argv);
    const [action, ...rest] = positionals;
    if (action === 'create') {
      if (rest.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${rest[0]}"\n\n${USAGE}`);
      const ingress = values.ingress === true;
      if (ingress && (values.service !== undefined || values.namespace !== undefined)) throw new InputError(CODE.CLI_USAGE, `--ingress names its own identity: no --service or --namespace\n\n${USAGE}`);
      if (!ingress && values.service === undefined) throw new InputError(CODE.CLI_USAGE, `--service is required (or --ingress)\n\n${USAGE}`);
      const ttlMs = parseDuration(values.ttl ?? '1h', '--ttl');
      const uses = values.uses === undefined ? DEFAULT_TOKEN_USES : /^[0-9]{1,6}$/.test(values.uses) ? Number(values.uses) : Number.NaN;
      if (!Number.isInteger(uses) || uses < 1 || uses > MAX_TOKEN_USES) throw new InputError(CODE.TOKEN_USES_INVALID, `--uses: expected a whole number from 1 to ${MAX_TOKEN_USES} (got "${values.uses}")`);
      const role = ingress ? ('ingress' as const) : undefined;
      const rootNamespace = values['root-namespace'] as string | undefined;
      // Before any connection: the API refuses it too, with the control plane's own root namespace.
      if (!ingress) refuseReservedToken(values.namespace ?? 'default', values.service as string, rootNamespace);
      const target = await targetOf(values);
      let created: CreateTokenResponse;
      if (target.online !== undefined) {
        const [service, namespace] = ingress ? [INGRESS_SERVICE, target.online.endpoint.rootNamespace] : [values.service as string, values.namespace ?? 'default'];
        created = await controlRequest<CreateTokenResponse>(target.online.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: target.online.adminToken, body: { service, namespace, ttlMs, uses, ...(role === undefined ? {} : { role }) } });
      } else {
        const tokens = target.offline as TokenService;
        const [service, namespace] = ingress ? [INGRESS_SERVICE, tokens.rootNamespace] : [values.service as string, values.namespace ?? 'default'];
        const made = await tokens.create(service, namespace, ttlMs, uses, role);
        created = { ...made.record, token: made.token };
      }
      if (values.output !== undefined) await writeFileAtomic(values.output, `${created.token}\n`, { mode: 0o600 });
      else ctx.stdout.write(`${created.token}\n`);
      ctx.stderr.write(`join token ${created.id} for ${created.role === 'ingress' ? 'the zone ingress, ' : ''}${created.namespace}/${created.service}, ${created.uses ?? uses} use(s), expires ${created.expiresAt}${values.output === undefined ? '' : `, written to ${values.output}`}\n`);
      return EXIT_OK;
    }
    if (action === 'revoke') {
      const id = rest[0];
      if (id === undefined || rest.length !== 1) throw new InputError(CODE.CLI_USAGE, `usage: trellis token revoke ID TARGET\n\n${USAGE}`);
      const target = await targetOf(values);
      const record = target.online !== undefined
        ? await controlRequest<TokenRecordView>(target.online.endpoint, { method: 'DELETE', path: CONTROL_PATHS.adminToken(id), bearer: target.online.adminToken })
        : await (target.offline as TokenService).revoke(id);
      ctx.stdout.write(`revoked join token ${record.id} (${record.namespace}/${record.service}) at ${record.revokedAt ?? 'now'}\n`);
      return EXIT_OK;
    }
    if (action === 'list') {
      const target = await targetOf(values);
      const tokens = target.online !== undefined
        ? (await controlRequest<{ tokens: TokenRecordView[] }>(target.online.endpoint, { method: 'GET', path: CONTROL_PATHS.adminTokens, bearer: target.online.adminToken })).tokens
        : await (target.offline as TokenService).list();
      ctx.stdout.write(`${'ID'.padEnd(14)}  ${'SERVICE'.padEnd(32)}  ${'EXPIRES'.padEnd(24)}  STATE\n`);
      const now = Date.now();
      for (const t of tokens) {
        const left = t.uses === undefined ? 'reusable' : `${t.usesLeft ?? 0}/${t.uses} uses left`;
        const state = t.revokedAt !== undefined ? `revoked ${t.revokedAt}` : Date.parse(t.expiresAt) <= now ? 'expired' : t.usesLeft === 0 ? 'spent' : `valid, ${left}`;
        ctx.stdout.write(`${t.id.padEnd(14)}  ${`${t.namespace}/${t.service}`.padEnd(32)}  ${t.expiresAt.padEnd(24)}  ${state}\n`);
      }
      return EXIT_OK;
    }
    ctx.stderr.write(USAGE);
    return EXIT_USAGE;
  },
};
