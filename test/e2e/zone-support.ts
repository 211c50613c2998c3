/**
 * Zones on loopback for the end-to-end files: a global control plane, zone control planes joined to it
 * with zone tokens, and a zone's ingress (`trellis ingress run`) on a fixed port it advertises.
 */
import { expect } from 'vitest';
import { join } from 'node:path';
import { freePort, spawnTrellis, startMesh, tempDir, trellis, type Mesh, type Proc } from './mesh-support.js';

export interface Global {
  readonly dir: string;
  readonly port: number;
  proc: Proc;
}

export async function startGlobal(): Promise<Global> {
  const dir = tempDir('trellis-global-');
  const policy = tempDir('trellis-global-policy-');
  const port = await freePort();
  const proc = await spawnTrellis(['control', 'run', '--mode', 'global', '--data-dir', dir, '--policy', policy, '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--zone-lease', '3s', '--log-level', 'warn'], 60_000);
  return { dir, port, proc };
}

export async function joinZone(global: Global, zone: string, policies: Readonly<Record<string, string>>): Promise<Mesh> {
  const tokenFile = join(global.dir, `${zone}.token`);
  const made = await trellis(['zone', 'token', 'create', '--zone', zone, '--data-dir', global.dir, '--output', tokenFile]);
  expect(made.code, made.stderr).toBe(0);
  return startMesh(policies, ['--zone', zone, '--global', `https://127.0.0.1:${global.port}`, '--global-ca', join(global.dir, 'trust-bundle.pem'), '--global-token-file', tokenFile]);
}

export async function startIngress(zone: Mesh, port: number): Promise<Proc> {
  const token = await zone.token('trellis-ingress', '10m', 'trellis-system', 'ingress');
  return spawnTrellis(['ingress', 'run', '--control', zone.api(), '--token-file', token, '--ca-file', join(zone.dataDir, 'trust-bundle.pem'),
    '--listen', `127.0.0.1:${port}`, '--public-address', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--grace', '1s', '--log-level', 'warn']);
}
