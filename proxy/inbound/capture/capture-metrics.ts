/**
 * Metrics of inbound capture (connections from outside the mesh that reached the app's ports), on the
 * sidecar's Registry. Labels are the mode and the result only: callers outside the mesh have no identity,
 * and their addresses (unbounded) go to the log line, never to a label.
 */
import { Counter, type Registry } from 'prom-client';

/**
 * `refused` (strict mode), `passed` (permissive: handed to the app), `app-unreachable` (permissive, but the
 * app did not accept), `not-redirected` (someone dialled the capture port itself), `original-dst-failed`,
 * `max-connections`.
 */
export type CaptureResult = 'refused' | 'passed' | 'app-unreachable' | 'not-redirected' | 'original-dst-failed' | 'max-connections';

export interface CaptureMetrics {
  readonly connections: Counter<'mode' | 'result'>;
  readonly bytes: Counter<'flow'>;
}

export function createCaptureMetrics(registry: Registry): CaptureMetrics {
  const registers = [registry];
  return Object.freeze({
    connections: new Counter({
      name: 'trellis_capture_inbound_connections_total',
      help: 'Plaintext connections from outside the mesh captured on their way to the app, by inbound mode (strict, permissive) and result.',
      labelNames: ['mode', 'result'] as const,
      registers,
    }),
    bytes: new Counter({
      name: 'trellis_capture_inbound_bytes_total',
      help: 'Bytes carried for connections from outside the mesh handed to the app in permissive mode; flow is to_destination or to_source.',
      labelNames: ['flow'] as const,
      registers,
    }),
  });
}
