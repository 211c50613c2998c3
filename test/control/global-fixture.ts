/** A global control plane in process on loopback (file store, ports 0), with zone joining, for the suites that test its boundary. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { GlobalFileStore } from '../../control/global/global-store.js';
import { startGlobalControlPlane, type RunningGlobal } from '../../control/global/global-plane.js';
import { ZoneTokenService } from '../../control/global/zone-tokens.js';
import { obtainZoneCredentials, type GlobalEndpoint, type ZoneCredentials } from '../../control/zone-sync/global-client.js';

export interface TestGlobal {
  readonly global: RunningGlobal;
  readonly tokens: ZoneTokenService;
  readonly endpoint: GlobalEndpoint;
  /** A temporary directory removed by `close`. */
  temp(prefix: string): string;
  /** A zone's certificate, through a zone token made for it. */
  joinZone(zone: string): Promise<ZoneCredentials>;
  close(): Promise<void>;
}

export async function startTestGlobal(prefix = 'trellis-global-unit-'): Promise<TestGlobal> {
  const dirs: string[] = [];
  const temp = (p: string): string => {
    const dir = mkdtempSync(join(tmpdir(), p));
    dirs.push(dir);
    return dir;
  };
  const dataDir = temp(prefix);
  const store = await GlobalFileStore.open(dataDir);
  const global = await startGlobalControlPlane({
    dataDir, store: undefined, caDir: undefined, policyDir: undefined, trustDomain: 'mesh.test', rootNamespace: 'trellis-system',
    listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, zoneLeaseMs: 30_000, exportDefault: 'all', zoneCertTtlMs: 3_600_000,
  }, store, pino({ level: 'silent' }));
  const tokens = new ZoneTokenService(store, 'mesh.test');
  const endpoint: GlobalEndpoint = { url: new URL(`https://127.0.0.1:${global.apiAddress.port}`), trustDomain: 'mesh.test', rootNamespace: 'trellis-system', bundlePem: global.trustBundlePem };
  return {
    global, tokens, endpoint, temp,
    joinZone: async (zone) => {
      const { token } = await tokens.create(zone, 60_000);
      return obtainZoneCredentials(endpoint, temp(`trellis-zone-${zone}-`), zone, { token });
    },
    close: async () => {
      await global.close();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
}
