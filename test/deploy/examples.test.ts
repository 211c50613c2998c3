/**
 * deploy/examples as a new user runs them: make-certs.sh makes the certificates with `trellis ca`, the
 * example policy is there, and `trellis proxy run --config` starts on both configs and carries a TCP
 * connection from the client side to the app behind the server side. The examples are copied to a
 * temporary directory and only their ports are changed (to free ones); certificate and policy paths are
 * used as written.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { closeServer, echoServer, roundTrip } from '../proxy/support/mesh.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const children: ChildProcess[] = [];
let dir: string;
let app: Awaited<ReturnType<typeof echoServer>>;

function start(config: string): Promise<{ tunnel: number; admin: number | null; listeners: { localPort: number }[] }> {
  const child = spawn(process.execPath, [MAIN, 'proxy', 'run', '--config', config, '--grace', '1s'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolvePromise, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolvePromise(JSON.parse(line)));
    child.once('exit', (code) => reject(new Error(`trellis proxy run --config ${config} exited with ${code}: ${stderr}`)));
  });
}

function withPorts(name: string, edit: (doc: ReturnType<typeof parseDocument>) => void): string {
  const path = join(dir, name);
  const doc = parseDocument(readFileSync(path, 'utf8'));
  edit(doc);
  writeFileSync(path, doc.toString());
  return path;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), 'trellis-examples-'));
  cpSync(join(ROOT, 'deploy/examples'), dir, { recursive: true, filter: (src) => !src.endsWith('/certs') });
  app = await echoServer();
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (app !== undefined) await closeServer(app.server, app.sockets);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('deploy/examples', () => {
  it('make-certs.sh makes the certificates the configs name, and refuses to run twice', () => {
    const env = { ...process.env, TRELLIS: `${process.execPath} ${MAIN}` };
    const made = spawnSync('bash', [join(dir, 'make-certs.sh')], { env, encoding: 'utf8' });
    expect(made.stderr + made.stdout).toContain('certificates for shop/api and shop/web');
    expect(made.status).toBe(0);
    for (const file of ['api.crt', 'api.key', 'web.crt', 'web.key', 'bundle.pem']) expect(existsSync(join(dir, 'certs', file)), file).toBe(true);
    const again = spawnSync('bash', [join(dir, 'make-certs.sh')], { env, encoding: 'utf8' });
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('already exists');
  });

  it('trellis proxy run --config starts on both examples and carries a connection', async () => {
    const server = await start(
      withPorts('proxy-server.yaml', (doc) => {
        doc.setIn(['tunnel', 'port'], 0);
        doc.setIn(['admin', 'port'], 0);
        doc.setIn(['inbound', 'appPorts'], doc.createNode([{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }]));
        doc.set('logLevel', 'warn');
      }),
    );
    const client = await start(
      withPorts('proxy-client.yaml', (doc) => {
        doc.setIn(['tunnel', 'port'], 0);
        doc.setIn(['admin', 'port'], 0);
        doc.setIn(['upstreams', 0, 'ports'], doc.createNode([{ port: 80, targetPort: app.port, protocol: 'tcp' }]));
        doc.setIn(['upstreams', 0, 'endpoints', 0, 'tunnelPort'], server.tunnel);
        doc.setIn(['listeners'], doc.createNode([{ bindAddress: '127.0.0.1', localPort: 0, service: 'api', namespace: 'shop', port: 80 }]));
        doc.set('logLevel', 'warn');
      }),
    );
    expect((await fetch(`http://127.0.0.1:${server.admin}/ready`)).status).toBe(200);
    const reply = await roundTrip(client.listeners[0]!.localPort, 'web to api');
    expect(reply.data.toString()).toBe('web to api');
  });
});
