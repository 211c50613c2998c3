/** Binds a server and resolves with its address, or rejects with the bind error (EADDRINUSE, EACCES). */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:net';
import type { ListenAddress } from '../config.js';

export async function listen(server: Server, at: ListenAddress): Promise<AddressInfo> {
  server.listen(at.port, at.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
  return server.address() as AddressInfo;
}
