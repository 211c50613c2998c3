/**
 * A captured connection to a destination outside the mesh, carried on untouched: a plain TCP connection
 * from this process to the original destination, spliced to the app's. No TLS, no policy: the mesh
 * knows nothing about the destination. The proxy's own connections are exempt from the redirect by its
 * user id, so this dial goes out as dialled and is not captured again.
 *
 * The app's bytes wait in its socket's bounded buffer until the destination accepted; a refusal or
 * timeout resets the app's connection, as the destination itself would have.
 */
import { connect, type Socket } from 'node:net';
import type { Logger } from '../../../common/log.js';
import type { OriginalDestination } from '../../core/original-dst.js';
import { resetSocket, spliceSockets, type SocketSpliceHandle } from '../../core/socket-splice.js';
import type { TransparentMetrics } from './transparent-metrics.js';

export interface PassthroughDeps {
  readonly metrics: TransparentMetrics;
  readonly logger: Logger;
  readonly accessLog: boolean;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Registers the connection so shutdown can cut it; returns the unregister function. */
  readonly track: (cut: () => void) => () => void;
}

export function passThrough(app: Socket, destination: OriginalDestination, correlationId: string, deps: PassthroughDeps): void {
  const started = Date.now();
  const target = destination.family === 6 ? `[${destination.address}]:${destination.port}` : `${destination.address}:${destination.port}`;
  const upstream = connect({ host: destination.address, port: destination.port, family: destination.family, allowHalfOpen: true, noDelay: true });
  let handle: SocketSpliceHandle | undefined;
  let settled = false;
  const untrack = deps.track(() => {
    if (handle !== undefined) handle.cut();
    else {
      resetSocket(app);
      upstream.destroy();
    }
  });
  app.pause();
  const timer = setTimeout(() => upstream.destroy(new Error(`no answer within ${deps.connectTimeoutMs} ms`)), deps.connectTimeoutMs);
  const onAppGone = (): void => {
    upstream.destroy();
  };
  app.once('close', onAppGone);
  app.on('error', () => undefined);

  upstream.once('error', (err: NodeJS.ErrnoException) => {
    clearTimeout(timer);
    if (handle !== undefined || settled) return;
    settled = true;
    untrack();
    app.off('close', onAppGone);
    resetSocket(app);
    deps.metrics.connections.inc({ result: 'passthrough-failed', destination: 'outside-mesh' });
    deps.logger.warn({ correlationId, destination: target, code: err.code, err: err.message }, 'passthrough destination outside the mesh unreachable; app connection reset');
  });
  upstream.once('connect', () => {
    clearTimeout(timer);
    app.off('close', onAppGone);
    if (app.destroyed) {
      upstream.destroy();
      return;
    }
    deps.metrics.connections.inc({ result: 'passthrough', destination: 'outside-mesh' });
    handle = spliceSockets(app, upstream, deps.idleTimeoutMs, (result) => {
      untrack();
      const toDestination = upstream.bytesWritten;
      const toSource = upstream.bytesRead;
      deps.metrics.passthroughBytes.inc({ flow: 'to_destination' }, toDestination);
      deps.metrics.passthroughBytes.inc({ flow: 'to_source' }, toSource);
      if (deps.accessLog) {
        deps.logger.info(
          { correlationId, direction: 'outbound', destination: target, result, bytesToDestination: toDestination, bytesToSource: toSource, durationMs: Date.now() - started },
          'tcp passthrough',
        );
      }
    });
    app.resume();
  });
}
