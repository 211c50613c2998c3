/**
 * Binding a listener the same way everywhere: a bind failure (port in use, address not local) rejects with
 * TRELLIS_PROXY_LISTEN_FAILED naming the address and what the listener is for, so start-up fails with a
 * message an operator can act on; after the bind, errors of the listening socket are logged, never thrown.
 */
import type { AddressInfo, Server } from 'node:net';
import type { Logger } from 'pino';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';

export function listenOn(server: Server, host: string, port: number, purpose: string, log: Logger): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void =>
      reject(new TrellisError(CODE.PROXY_LISTEN_FAILED, `cannot listen on ${host}:${port} for ${purpose}: ${err.message}`, { side: 'input', cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      server.on('error', (err) => log.error({ err: err.message }, `${purpose} listener error`));
      resolve(server.address() as AddressInfo);
    });
  });
}
