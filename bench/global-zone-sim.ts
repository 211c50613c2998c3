/**
 * One simulated zone for `npm run bench:global`: the zone side of the sync protocol without a registry
 * (its exported services are a versioned set the bench changes directly), holding one real mTLS HTTP/2
 * stream to the global and a replica per down kind. Counts the bytes it reads and sends, and reports
 * each applied catalogue change.
 */
import type { ClientHttp2Session } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { chunkDelta } from '../control/zone-sync/chunking.js';
import { openSession, type GlobalEndpoint, type ZoneCredentials } from '../control/zone-sync/global-client.js';
import { LineStream } from '../control/zone-sync/line-stream.js';
import { DOWN_KINDS, ZONE_SYNC_LIMITS, ZONE_SYNC_PATHS, parseDownMessage, type DownKind } from '../control/zone-sync/protocol.js';
import type { ExportedService } from '../control/zone-sync/records.js';
import { SyncReplica } from '../control/zone-sync/replica.js';
import { VersionedSet } from '../control/zone-sync/versioned-set.js';

export class SimulatedZone {
  readonly services = new VersionedSet<unknown>();
  replicas: Record<DownKind, SyncReplica<unknown>> = this.emptyReplicas();
  bytesIn = 0;
  bytesOut = 0;
  private epoch: string;
  private session: ClientHttp2Session | undefined;
  private lines: LineStream | undefined;
  private sent = 0;
  private globalEpoch: string | undefined;
  private welcomed: (() => void) | undefined;
  /** Called with the time and the keys of every applied service delta. */
  onApplied: ((at: number, keys: readonly string[]) => void) | undefined;

  constructor(readonly name: string, private readonly endpoint: GlobalEndpoint, private readonly credentials: ZoneCredentials) {
    this.epoch = `${name}-epoch-0001`;
  }

  static service(zone: string, i: number, healthy: number): [string, ExportedService] {
    const name = `svc-${i}`;
    return [`${zone}/bench/${name}`, { zone, namespace: 'bench', name, ports: [{ port: 8080, protocol: 'http' }], identities: [`spiffe://bench.local/ns/bench/sa/${name}`], localities: [{ locality: zone, healthy, total: 5 }] }];
  }

  /** Connects and says hello; resolves on the welcome. `fresh`: a new epoch and an empty catalogue (a zone that lost its state). */
  async connect(fresh = false): Promise<void> {
    if (fresh) {
      this.epoch = `${this.name}-epoch-${Date.now()}`;
      this.replicas = this.emptyReplicas();
      this.globalEpoch = undefined;
    }
    const session = await openSession(this.endpoint, this.credentials);
    this.session = session;
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'POST', ':path': ZONE_SYNC_PATHS.sync });
    const welcome = new Promise<void>((resolve) => (this.welcomed = resolve));
    this.lines = new LineStream(stream, ZONE_SYNC_LIMITS.maxMessageBytes, {
      onLine: (line, bytes) => this.receive(line, bytes),
      onClose: () => undefined,
    });
    const down = Object.fromEntries(DOWN_KINDS.map((k) => [k, this.replicas[k].version]));
    this.write([`${JSON.stringify({ t: 'hello', protocol: 1, zone: this.name, epoch: this.epoch, ...(this.globalEpoch === undefined ? {} : { globalEpoch: this.globalEpoch }), down })}\n`]);
    await welcome;
  }

  disconnect(): void {
    this.lines?.close();
    this.session?.destroy();
  }

  /** Sends what changed in `services` since the last send. */
  flush(): void {
    const delta = this.services.since(this.sent);
    if (delta.to === this.sent && !delta.reset) return;
    this.write(chunkDelta('service', delta, false));
    this.sent = delta.to;
  }

  private write(lines: readonly string[]): void {
    for (const line of lines) this.bytesOut += Buffer.byteLength(line);
    this.lines?.send(lines);
  }

  private receive(line: string, bytes: number): void {
    this.bytesIn += bytes;
    const message = parseDownMessage(line);
    if (message.t === 'welcome') {
      this.globalEpoch = message.globalEpoch;
      if (message.resume) this.sent = message.applied.service;
      else {
        this.write(chunkDelta('service', this.services.snapshot(), false));
        this.sent = this.services.version;
      }
      this.welcomed?.();
      return;
    }
    if (message.t !== 'delta') return;
    const applied = this.replicas[message.kind].receive(message, bytes);
    if (applied !== undefined && message.kind === 'service') this.onApplied?.(performance.now(), applied.changes.map((c) => c.key));
  }

  private emptyReplicas(): Record<DownKind, SyncReplica<unknown>> {
    return Object.fromEntries(DOWN_KINDS.map((k) => [k, new SyncReplica<unknown>(k)])) as Record<DownKind, SyncReplica<unknown>>;
  }
}
