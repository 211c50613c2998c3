/**
 * What every third-party pair (HAProxy, nginx stream, Caddy) does the same way: write both sides'
 * config files, start the server side before the client side (the client dials it), wait for each
 * side's ports, and stop both if either fails to come up. The pair file keeps only what is its own:
 * its configs, how its process starts, its ports and its description.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LOOPBACK } from '../ports.js';
import { waitForPorts, type ManagedProcess } from '../processes.js';
import type { PairContext, PairName, PortKind, RunningPair } from '../pair.js';

export interface TwoSidedPairSpec<P> {
  readonly name: PairName;
  readonly ports: P;
  /** File names in the pair's directory and their text, per side. */
  readonly configs: Readonly<Record<'server' | 'client', { readonly file: string; readonly text: string }>>;
  readonly start: (role: 'server' | 'client', configPath: string) => ManagedProcess;
  /** Ports each side listens on once it is up. */
  readonly listens: Readonly<Record<'server' | 'client', readonly number[]>>;
  /** The client side's port per port kind the pair serves. */
  readonly entry: Readonly<Partial<Record<PortKind, number>>>;
  readonly description: string;
}

export async function startTwoSidedPair<P>(context: PairContext, spec: TwoSidedPairSpec<P>): Promise<RunningPair & { readonly ports: P }> {
  const paths = { server: join(context.dir, spec.configs.server.file), client: join(context.dir, spec.configs.client.file) };
  await writeFile(paths.server, spec.configs.server.text);
  await writeFile(paths.client, spec.configs.client.text);
  const server = spec.start('server', paths.server);
  const client = spec.start('client', paths.client);
  const processes = [client, server];
  try {
    await waitForPorts(server, spec.listens.server);
    await waitForPorts(client, spec.listens.client);
  } catch (err) {
    await Promise.all(processes.map((p) => p.stop()));
    throw err;
  }
  const entry: Partial<Record<PortKind, { host: string; port: number }>> = {};
  for (const [kind, port] of Object.entries(spec.entry) as [PortKind, number][]) entry[kind] = { host: LOOPBACK, port };
  return {
    name: spec.name,
    ports: spec.ports,
    entry,
    sidecars: [
      { role: 'client', pid: client.pid },
      { role: 'server', pid: server.pid },
    ],
    description: spec.description,
    assertAlive(): void {
      for (const p of processes) if (!p.running) throw new Error(p.describeExit());
    },
    async stop(): Promise<void> {
      await Promise.all(processes.map((p) => p.stop()));
    },
  };
}
