/**
 * Binding a listener the same way everywhere: a bind failure (port in use, address not local) rejects with
 * TRELLIS_PROXY_LISTEN_FAILED naming the address and what the listener is for, so start-up fails with a
 * message an operator can act on; after the bind, errors of the listening socket are logged, never thrown.
 * Closing is the same everywhere too: a grace period, then what is left is cut.
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

/**
 * Binds a capture listener (inbound or outbound), refused with TRELLIS_CAPTURE_UNAVAILABLE when this build
 * cannot read a connection's original destination (`unavailableReason`: why, or null), then one info line.
 */
export function listenForCapture(server: Server, bind: { readonly host: string; readonly port: number }, purpose: 'inbound capture' | 'outbound capture', unavailableReason: string | null, log: Logger, fields: Record<string, unknown>): Promise<AddressInfo> {
  if (unavailableReason !== null) {
    const what = purpose === 'inbound capture' ? 'inbound capture' : 'transparent capture';
    return Promise.reject(new TrellisError(CODE.CAPTURE_UNAVAILABLE, `${what} is unavailable: ${unavailableReason}`, { side: 'input' }));
  }
  return listenOn(server, bind.host, bind.port, purpose, log).then((bound) => {
    log.info({ address: bound.address, port: bound.port, ...fields }, `${purpose} listening`);
    return bound;
  });
}

/**
 * Stops accepting and resolves once the listener is closed; connections still open after `graceMs` are
 * ended by `cutAll` (at once when the listener never listened), so closing always ends.
 */
export function closeWithGrace(server: Server, graceMs: number, cutAll: () => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(cutAll, graceMs);
    timer.unref();
    if (!server.listening) {
      clearTimeout(timer);
      cutAll();
      resolve();
      return;
    }
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

