/** The JSON the control plane's admin port serves under /ui/api/ (control/golden/ui-api.ts), as the UI reads it. */
import { useEffect, useState } from 'preact/hooks';

export interface Overview { zone: string; trustDomain: string; mode: string; configVersion: number; agentsConnected: number; windowMinutes: number; global: null | { global: string; connected: boolean; staleMs: number; staleSince?: string; lastError?: string } }
/** A zone as the global's admin port shows it (control/global/global-ui-api.ts). */
export interface GlobalZone { name: string; state: 'online' | 'offline'; connected: boolean; lastSeenAgoMs: number; offlineSince?: string; lagMs: number; services: number; golden: null | { ageMs: number; edges: number; truncated: number; current: boolean } }
export interface GlobalOverview { zone: 'global'; mode: 'global'; role: string; trustDomain: string; leaseMs: number; windowMinutes: number; zones: GlobalZone[] }
export interface Instance { instanceId: string; zone: string; address: string; healthy: boolean; agent: string; version: string | null }
export interface Service { namespace: string; service: string; healthy: number; instances: Instance[] }
export interface Edge { source: string; destination: string; protocol: string; requests: number; failures: number; ratePerSecond: number; successRate: number | null; p50Ms: number | null; p99Ms: number | null; denied: number }
export interface Denial { at: string; zone: string; source: string; destination: string; policy: string; rule: string; enforced: boolean; count: number }
export interface Agent { instanceId: string; namespace: string; service: string; configVersion: number | null; staleConfig: boolean; configStale: boolean; certNotAfter: string | null; certLeftMs: number | null; certNearExpiry: boolean; receivedAt: string }
export interface Matrix { services: string[]; truncated: boolean; cells: { allowed: boolean; policy: string | null; rule: number | null }[][]; revision: string }
export interface Explained { decision: { allowed: boolean; enforced: boolean; policy: string | null; rule: number | null; reason: string }; rule: unknown }

export interface Polled<T> { data: T | undefined; error: string | undefined }

/** Fetches `api/<path>` now and every `everyMs`; the last good answer stays shown while a poll fails. */
export function usePolled<T>(path: string, everyMs = 2000): Polled<T> {
  const [state, setState] = useState<Polled<T>>({ data: undefined, error: undefined });
  useEffect(() => {
    let live = true;
    const poll = async (): Promise<void> => {
      try {
        const res = await fetch(`api/${path}`, { cache: 'no-store' });
        if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
        const data = (await res.json()) as T;
        if (live) setState({ data, error: undefined });
      } catch (err) {
        if (live) setState((s) => ({ data: s.data, error: `cannot read ${path}: ${(err as Error).message}` }));
      }
    };
    void poll();
    const timer = setInterval(() => void poll(), everyMs);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [path, everyMs]);
  return state;
}

export function fmtMs(ms: number | null): string {
  if (ms === null) return '–';
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function fmtPct(rate: number | null): string {
  return rate === null ? '–' : `${(rate * 100).toFixed(rate === 1 ? 0 : 1)} %`;
}

export function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
