/**
 * `trellis zone`: the zones of a multi-zone mesh, as the global control plane sees them.
 *
 *   zone token create|revoke|list --data-dir DIR   zone tokens, offline on the global's data dir (every
 *                                                   use reads its record, so the global may be running)
 *   zone list [--admin URL]                         every zone: state, connection, versions, lag, records
 *   zone describe NAME [--admin URL]                one zone, with its exported services
 *
 * list and describe read the global's admin port (`/zones`, `/zones/<name>`), loopback by default.
 */
import { request } from 'node:http';
import { resolve } from 'node:path';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import { parseDuration } from '../common/duration.js';
import { InputError, TrellisError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { readDataDirIdentity } from '../control/identity-file.js';
import { GlobalFileStore } from '../control/global/global-store.js';
import { GLOBAL_DATA_DIR_ZONE } from '../control/global/global-plane.js';
import type { ZoneStatus } from '../control/global/global-state.js';
import { ZoneTokenService } from '../control/global/zone-tokens.js';
import { GLOBAL_DEFAULT_ADMIN_PORT } from './control-global.js';

const SPEC = {
  usage: `trellis zone token create --zone NAME [--ttl 1h] [--uses 1] [--output FILE] --data-dir DIR
       trellis zone token revoke ID --data-dir DIR
       trellis zone token list --data-dir DIR
       trellis zone list [--admin URL] [--json]
       trellis zone describe NAME [--admin URL]`,
  about: `Zone tokens let a zone control plane join the global one (\`trellis control run --global URL
--zone NAME --global-token-file F\`): signed, expiring, single use by default, revocable (revoking
one refuses the zone certificates issued through it). --data-dir is the global's data dir.
list and describe read the global control plane's admin port.`,
  flags: {
    zone: { type: 'string', value: 'NAME', help: 'token create: the zone the token admits', whenAbsent: 'required by token create' },
    ttl: { type: 'string', value: 'DURATION', help: 'token create: how long the token may be used', whenAbsent: '1h' },
    uses: { type: 'string', value: 'N', help: 'token create: how many joins the token allows', whenAbsent: '1' },
    output: { type: 'string', value: 'FILE', help: 'token create: write the token to FILE (mode 0600)', whenAbsent: 'stdout' },
    'data-dir': { type: 'string', value: 'DIR', help: "token: the global control plane's data dir", whenAbsent: 'required by token' },
    store: { type: 'string', value: 'URL', help: "token: the global's PostgreSQL store (postgres://...), when it has one", whenAbsent: 'the file store in --data-dir' },
    admin: { type: 'string', value: 'URL', help: "list, describe: the global's admin address", whenAbsent: `http://127.0.0.1:${GLOBAL_DEFAULT_ADMIN_PORT}` },
    json: { type: 'boolean', help: 'list: print the JSON as the global serves it', whenAbsent: 'a table' },
  },
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);
const MAX_ADMIN_REPLY_BYTES = 16 * 1024 * 1024;

async function tokenService(dataDir: string | undefined, storeUrl: string | undefined): Promise<{ service: ZoneTokenService; close: () => Promise<void> }> {
  if (dataDir === undefined) throw new InputError(CODE.CLI_USAGE, `zone token needs --data-dir DIR (the global's)\n\n${USAGE}`);
  const identity = await readDataDirIdentity(resolve(dataDir));
  if (identity?.zone !== GLOBAL_DATA_DIR_ZONE) throw new InputError(CODE.CLI_NOT_A_DATA_DIR, `${dataDir} is not a global control plane's data dir; start \`trellis control run --mode global --data-dir ${dataDir}\` once first`);
  if (storeUrl === undefined) return { service: new ZoneTokenService(await GlobalFileStore.open(resolve(dataDir)), identity.trustDomain), close: async () => undefined };
  const { default: pg } = await import('pg');
  const { PostgresGlobalStore, redactUrl } = await import('../control/global/postgres-store.js');
  const client = new pg.Client({ connectionString: storeUrl });
  await client.connect().catch((err: unknown) => {
    throw new InputError(CODE.ZONE_STORE_UNAVAILABLE, `--store ${redactUrl(storeUrl)}: ${(err as Error).message}`);
  });
  await PostgresGlobalStore.migrate(client);
  const store = new PostgresGlobalStore(client, redactUrl(storeUrl));
  return { service: new ZoneTokenService(store, identity.trustDomain), close: () => store.close() };
}

export function getJson(base: string, path: string): Promise<{ status: number; body: unknown }> {
  let url: URL;
  try {
    url = new URL(path, base);
  } catch {
    return Promise.reject(new InputError(CODE.CLI_BAD_URL, `--admin: "${base}" is not a URL`));
  }
  if (url.protocol !== 'http:') return Promise.reject(new InputError(CODE.CLI_BAD_URL, '--admin must be an http:// URL (the admin port is plain HTTP on loopback)'));
  return new Promise((resolveReply, reject) => {
    const req = request(url, { timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > MAX_ADMIN_REPLY_BYTES) req.destroy(new Error('reply too large'));
        else chunks.push(c);
      });
      res.on('end', () => {
        try {
          resolveReply({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown });
        } catch {
          reject(new TrellisError(CODE.CONTROL_BAD_RESPONSE, `${url.toString()} did not answer with JSON`, { side: 'upstream' }));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (err) => reject(new TrellisError(CODE.CONTROL_UNREACHABLE, `cannot read ${url.toString()}: ${err.message}`, { side: 'upstream' })));
    req.end();
  });
}

function ago(now: number, at: number): string {
  const s = Math.max(0, Math.round((now - at) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

function listTable(now: number, zones: readonly ZoneStatus[]): string {
  const rows = [['ZONE', 'STATE', 'CONNECTED', 'LAST SEEN', 'SERVICES', 'VERSIONS s/i/t', 'LAG ms s/i/t', 'EPOCH']];
  for (const z of zones) {
    rows.push([z.name, z.state, z.connected ? 'yes' : 'no', `${ago(now, z.lastSeen)} ago`, String(z.records.service), `${z.versions.service}/${z.versions.ingress}/${z.versions.trust}`, `${z.lagMs.service}/${z.lagMs.ingress}/${z.lagMs.trust}`, z.epoch]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

async function tokenAction(rest: readonly string[], values: Record<string, string | boolean | undefined>, ctx: CommandContext): Promise<number> {
  const { service, close } = await tokenService(values['data-dir'] as string | undefined, values.store as string | undefined);
  try {
    return await tokenWork(service, rest, values, ctx);
  } finally {
    await close();
  }
}

async function tokenWork(service: ZoneTokenService, rest: readonly string[], values: Record<string, string | boolean | undefined>, ctx: CommandContext): Promise<number> {
  const [action, ...args] = rest;
  if (action === 'create' && args.length === 0) {
    if (values.zone === undefined) throw new InputError(CODE.CLI_USAGE, `--zone is required\n\n${USAGE}`);
    const uses = /^[0-9]{1,6}$/.test(String(values.uses ?? '1')) ? Number(values.uses ?? '1') : Number.NaN;
    const made = await service.create(values.zone as string, parseDuration((values.ttl as string | undefined) ?? '1h', '--ttl'), uses);
    if (values.output !== undefined) await writeFileAtomic(values.output as string, `${made.token}\n`, { mode: 0o600 });
    else ctx.stdout.write(`${made.token}\n`);
    ctx.stderr.write(`zone token ${made.record.id} for zone ${made.record.zone}, ${made.record.uses} use(s), expires ${made.record.expiresAt}\n`);
    return EXIT_OK;
  }
  if (action === 'revoke' && args.length === 1) {
    const record = await service.revoke(args[0] as string);
    ctx.stdout.write(`revoked zone token ${record.id} (zone ${record.zone}) at ${record.revokedAt ?? 'now'}\n`);
    return EXIT_OK;
  }
  if (action === 'list' && args.length === 0) {
    const now = Date.now();
    ctx.stdout.write(`${'ID'.padEnd(14)}  ${'ZONE'.padEnd(24)}  ${'EXPIRES'.padEnd(24)}  STATE\n`);
    for (const t of await service.list()) {
      const state = t.revokedAt !== undefined ? `revoked ${t.revokedAt}` : Date.parse(t.expiresAt) <= now ? 'expired' : t.usesLeft <= 0 ? 'spent' : `valid, ${t.usesLeft}/${t.uses} uses left`;
      ctx.stdout.write(`${t.id.padEnd(14)}  ${t.zone.padEnd(24)}  ${t.expiresAt.padEnd(24)}  ${state}\n`);
    }
    return EXIT_OK;
  }
  throw new InputError(CODE.CLI_USAGE, USAGE);
}

export const zoneCommand: Command = {
  name: 'zone',
  usage: USAGE,
  forms: { '': SPEC, token: SPEC, list: SPEC, describe: SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const { values, positionals } = parseFlags(SPEC, argv);
    const [action, ...rest] = positionals;
    const admin = values.admin ?? `http://127.0.0.1:${GLOBAL_DEFAULT_ADMIN_PORT}`;
    if (action === 'token') return tokenAction(rest, values, ctx);
    if (action === 'list' && rest.length === 0) {
      const { body } = await getJson(admin, '/zones');
      if (values.json === true) ctx.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      else ctx.stdout.write(listTable((body as { now: number }).now, (body as { zones: ZoneStatus[] }).zones));
      return EXIT_OK;
    }
    if (action === 'describe' && rest.length === 1) {
      const { status, body } = await getJson(admin, `/zones/${encodeURIComponent(rest[0] as string)}`);
      if (status === 404) throw new InputError(CODE.ZONE_UNKNOWN, `the global control plane knows no zone "${rest[0] as string}" (see \`trellis zone list\`)`);
      ctx.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      return EXIT_OK;
    }
    ctx.stderr.write(USAGE);
    return EXIT_USAGE;
  },
};
