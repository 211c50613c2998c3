/**
 * Binding a server: resolves with the bound address once it listens (port 0 picks a free port), rejects
 * with the bind error (EADDRINUSE, EACCES) instead of leaving it to an 'error' event nobody handles.
 */
import type { AddressInfo, Server } from 'node:net';

export function listenServer(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
