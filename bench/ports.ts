/**
 * Free loopback ports for the servers the benchmark starts. nginx and haproxy take a port number in
 * their config, not a listening socket, so we ask the kernel for ports by binding port 0, hold them all
 * until the whole set is known (so no two are the same), and release them just before the tools bind.
 */
import { createServer, type Server } from 'node:net';

export const LOOPBACK = '127.0.0.1';

export interface Address {
  readonly host: string;
  readonly port: number;
}

function listenOnAnyPort(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: LOOPBACK, port: 0, exclusive: true }, () => resolve(server));
  });
}

export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listenOnAnyPort());
    return servers.map((s) => {
      const address = s.address();
      if (address === null || typeof address === 'string') throw new Error('a TCP server has no port');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

export function formatAddress(address: Address): string {
  return `${address.host}:${address.port}`;
}
