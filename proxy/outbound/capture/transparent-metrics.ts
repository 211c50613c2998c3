/**
 * Metrics of outbound transparent capture, on the sidecar's Registry. Labels are results and service
 * names only: destinations outside the mesh are addresses, unbounded in number, so they appear in log
 * lines, never in labels.
 */
import { Counter, type Registry } from 'prom-client';

/**
 * What became of a captured connection:
 * `mesh` (handed to the mesh's outbound path), `passthrough` (spliced to a destination outside the mesh),
 * `refused-outside-mesh` (outside the mesh, and only mesh destinations are allowed), `not-redirected`
 * (someone dialled the capture port itself), `original-dst-failed`, `passthrough-failed` (the outside
 * destination could not be reached), `max-connections`.
 */
export type TransparentResult =
  | 'mesh'
  | 'passthrough'
  | 'refused-outside-mesh'
  | 'not-redirected'
  | 'original-dst-failed'
  | 'passthrough-failed'
  | 'max-connections';

export interface TransparentMetrics {
  readonly connections: Counter<'result' | 'destination'>;
  readonly passthroughBytes: Counter<'flow'>;
}

export function createTransparentMetrics(registry: Registry): TransparentMetrics {
  const registers = [registry];
  return Object.freeze({
    connections: new Counter({
      name: 'trellis_capture_outbound_connections_total',
      help: 'Connections captured by outbound transparent capture, by result and destination service ("outside-mesh" for the rest).',
      labelNames: ['result', 'destination'] as const,
      registers,
    }),
    passthroughBytes: new Counter({
      name: 'trellis_capture_passthrough_bytes_total',
      help: 'Bytes carried to and from destinations outside the mesh; flow is to_destination or to_source.',
      labelNames: ['flow'] as const,
      registers,
    }),
  });
}
