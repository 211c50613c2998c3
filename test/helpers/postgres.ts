/**
 * A throwaway PostgreSQL server for tests: `initdb` in a temporary directory and `postgres` on a free
 * loopback port, run as the `postgres` OS user (the server refuses root) through setpriv, trust auth on
 * loopback only, fsync off. `stop()` shuts it down and removes the directory; call it in afterAll.
 * Missing server binaries skip the suite on a developer's machine and fail it in CI (CI=true).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface TestPostgres {
  readonly url: string;
  stop(): Promise<void>;
}

/** The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin), if any. */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
  const found = majors.map((m) => join(root, m, 'bin')).find((bin) => existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres')));
  return found;
}

/** Whether a suite can run here: skip locally without PostgreSQL, fail in CI. */
export function requiresPostgres(): { skip: boolean } {
  let ok = postgresBin() !== undefined && process.getuid?.() === 0;
  try {
    execFileSync('id', ['postgres'], { stdio: 'ignore' });
  } catch {
    ok = false;
  }
  if (ok) return { skip: false };
  if (process.env.CI === 'true') throw new Error('CI=true and this suite needs the postgresql server (Debian package postgresql), the postgres OS user and root: .ci/run must install it');
  console.warn('SKIPPED (PostgreSQL server, the postgres user or root privileges missing): apt-get install postgresql');
  return { skip: true };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

const AS_POSTGRES = ['--reuid', 'postgres', '--regid', 'postgres', '--init-groups'];

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBin() as string;
  const dir = mkdtempSync(join(tmpdir(), 'trellis-pg-'));
  const owner = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const group = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(dir, owner, group);
  const data = join(dir, 'data');
  execFileSync('setpriv', [...AS_POSTGRES, join(bin, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'], { stdio: 'ignore' });
  const port = await freePort();
  const server: ChildProcess = spawn('setpriv', [...AS_POSTGRES, join(bin, 'postgres'), '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=50'], { stdio: 'ignore' });
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.end();
      break;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline || server.exitCode !== null) {
        server.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    async stop() {
      if (server.exitCode === null && server.signalCode === null) {
        // SIGINT: fast shutdown (ends sessions, no waiting for clients).
        server.kill('SIGINT');
        await new Promise((r) => (server.exitCode !== null || server.signalCode !== null ? r(undefined) : server.once('exit', r)));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
