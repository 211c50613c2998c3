/**
 * `trellis proxy run` as real processes, driven by the example configs in deploy/examples (ports and
 * certificate paths rewritten for the test): a client process and a server process carry a TCP
 * connection, the admin port answers, a bad config fails with file:line:column errors and exit 2, and
 * SIGTERM stops the process cleanly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseDocument } from 'yaml';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { closeServer, echoServer, roundTrip } from './support/mesh.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const children: ChildProcess[] = [];
let dir: string;
let pki: TestPki;
const POLICY = 'apiVersion: trellis.dev/v1alpha1\nkind: TrafficPermission\nmetadata: { name: api-callers, namespace: shop }\nspec:\n  destination: api\n  mode: enforce\n  rules:\n    - action: allow\n      from: [web]\n';
let app: Awaited<ReturnType<typeof echoServer>>;

interface Ready {
  event: string;
  tunnel: number;
  admin: number | null;
  listeners: { service: string; port: number; localPort: number }[];
}

function start(config: string): Promise<{ child: ChildProcess; ready: Ready }> {
  const child = spawn(process.execPath, [MAIN, 'proxy', 'run', '--config', config, '--grace', '1s'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => resolvePromise({ child, ready: JSON.parse(line) as Ready }));
    child.once('exit', (code) => reject(new Error(`proxy exited with ${code}: ${stderr}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (code) => r(code))));
}

function rewrite(example: string, out: string, edit: (doc: ReturnType<typeof parseDocument>) => void): string {
  const doc = parseDocument(readFileSync(join(ROOT, 'deploy/examples', example), 'utf8'));
  edit(doc);
  const path = join(dir, out);
  writeFileSync(path, doc.toString());
  return path;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), 'trellis-proxy-cli-'));
  mkdirSync(join(dir, 'certs'));
  mkdirSync(join(dir, 'policy'));
  pki = await createTestPki({ trustDomain: 'example.org' });
  for (const svc of ['api', 'web']) {
    const id = await pki.issue(svc, 'shop');
    writeFileSync(join(dir, `certs/${svc}.crt`), id.certChainPem);
    writeFileSync(join(dir, `certs/${svc}.key`), id.keyPem, { mode: 0o600 });
  }
  writeFileSync(join(dir, 'certs/bundle.pem'), pki.bundlePem);
  writeFileSync(join(dir, 'policy/api.yaml'), POLICY);
  app = await echoServer();
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (app !== undefined) await closeServer(app.server, app.sockets);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('trellis proxy run', () => {
  it('runs a server and a client from the example configs and carries a TCP connection between them', async () => {
    const serverConfig = rewrite('proxy-server.yaml', 'server.yaml', (doc) => {
      doc.setIn(['tunnel', 'port'], 0);
      doc.setIn(['admin', 'port'], 0);
      doc.setIn(['inbound', 'appPorts'], doc.createNode([{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }]));
      doc.set('logLevel', 'warn');
    });
    const server = await start(serverConfig);
    const clientConfig = rewrite('proxy-client.yaml', 'client.yaml', (doc) => {
      doc.setIn(['tunnel', 'port'], 0);
      doc.setIn(['admin', 'port'], 0);
      doc.setIn(['upstreams', 0, 'ports'], doc.createNode([{ port: 80, targetPort: app.port, protocol: 'tcp' }]));
      doc.setIn(['upstreams', 0, 'endpoints', 0, 'tunnelPort'], server.ready.tunnel);
      doc.setIn(['listeners'], doc.createNode([{ bindAddress: '127.0.0.1', localPort: 0, service: 'api', namespace: 'shop', port: 80 }]));
      doc.set('logLevel', 'warn');
    });
    const client = await start(clientConfig);
    const local = client.ready.listeners[0]!.localPort;

    const r = await roundTrip(local, 'through two processes');
    expect(r.data.toString()).toBe('through two processes');

    const admin = `http://127.0.0.1:${server.ready.admin}`;
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    expect((await fetch(`${admin}/ready`)).status).toBe(200);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toMatch(/trellis_tcp_connections_total\{direction="inbound",source="shop\/web",destination="shop\/api",result="ok"\} 1/);
    expect(metrics).toMatch(/trellis_certificate_expiry_seconds\{spiffe_id="spiffe:\/\/example.org\/ns\/shop\/sa\/api"\} \d+/);
    const certs = (await (await fetch(`${admin}/certs`)).json()) as { spiffeId: string };
    expect(certs.spiffeId).toBe('spiffe://example.org/ns/shop/sa/api');
    const config = await (await fetch(`${admin}/config`)).text();
    expect(config).toContain('"policies"');
    expect(config).not.toMatch(/PRIVATE KEY/);

    // Certificate rotation without restart: new files on disk, /certs shows the new certificate, traffic flows.
    const before = (await (await fetch(`${admin}/certs`)).json()) as { chain: { serialNumber: string }[] };
    const renewed = await pki.issue('api', 'shop');
    writeFileSync(join(dir, 'certs/api.key'), renewed.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'certs/api.crt'), renewed.certChainPem);
    await expect
      .poll(async () => ((await (await fetch(`${admin}/certs`)).json()) as { chain: { serialNumber: string }[] }).chain[0]!.serialNumber, { timeout: 10_000 })
      .not.toBe(before.chain[0]!.serialNumber);
    expect((await roundTrip(local, 'after rotation')).data.toString()).toBe('after rotation');

    // SIGHUP re-reads the policy: web is no longer allowed, the next connection is refused.
    writeFileSync(join(dir, 'policy/api.yaml'), POLICY.replace('from: [web]', 'from: [billing]'));
    server.child.kill('SIGHUP');
    await expect.poll(async () => (await roundTrip(local, 'denied?')).data.length, { timeout: 10_000 }).toBe(0);

    client.child.kill('SIGTERM');
    server.child.kill('SIGTERM');
    expect(await exited(client.child)).toBe(0);
    expect(await exited(server.child)).toBe(0);
  });

  it('refuses a config with errors, naming each with file:line:column, and exits 2', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'service: Web\nnamespace: shop\ntrustDomain: example.org\nidentity: { certificate: a, key: b, trustBundle: c }\ntunel: { port: 1 }\nlisteners:\n  - { localPort: 9000, service: nope, port: 80 }\n');
    const child = spawn(process.execPath, [MAIN, 'proxy', 'run', '--config', bad], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    expect(await exited(child)).toBe(2);
    expect(stderr).toContain(`${bad}:1:10: service:`);
    expect(stderr).toContain(`${bad}:5:1: tunel: unknown field (did you mean "tunnel"?)`);
    expect(stderr).toMatch(/bad\.yaml:7:\d+: listeners\[0\]: no upstream shop\/nope/);
  });
});
