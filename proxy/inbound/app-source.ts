/**
 * Where the inbound side dials its app from. Normally the kernel picks (loopback to loopback). In
 * transparent capture an app may listen only on the workload's own address; a connection from the proxy's
 * user to that address leaves over `lo` and the rules send it back to the inbound capture port, as they do
 * for an app calling itself by its pod IP (capture/rules.ts). Dialled from the hand-off source
 * (127.0.0.6, `::6`), which the rules exempt, it reaches the app, as Istio's sidecar does it.
 */

/** Must match capture/options.ts (INBOUND_HANDOFF_SOURCE_V4/V6): the rules exempt exactly these. */
export const HANDOFF_SOURCE_V4 = '127.0.0.6';
export const HANDOFF_SOURCE_V6 = '::6';

export interface AppDialSource {
  readonly v4: string;
  readonly v6: string;
}

export const HANDOFF_SOURCE: AppDialSource = Object.freeze({ v4: HANDOFF_SOURCE_V4, v6: HANDOFF_SOURCE_V6 });

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.') || host.startsWith('::ffff:127.');
}

/** The local address to dial `host` from: undefined (the kernel's choice) for loopback or without a source. */
export function appLocalAddress(host: string, source: AppDialSource | undefined): string | undefined {
  if (source === undefined || isLoopbackHost(host)) return undefined;
  return host.includes(':') ? source.v6 : source.v4;
}
