/** Builders shared by the zone sync tests: exported service records and the lines a sender makes. */
import { chunkDelta } from '../../../control/zone-sync/chunking.js';
import { parseDownMessage, parseUpMessage, type DeltaMessage, type DownKind, type UpKind } from '../../../control/zone-sync/protocol.js';
import { serviceKey, type ExportedService } from '../../../control/zone-sync/records.js';
import type { SetDelta } from '../../../control/zone-sync/versioned-set.js';

export function service(zone: string, name: string, healthy = 1, total = 1, namespace = 'shop'): ExportedService {
  return {
    zone, namespace, name,
    ports: [{ port: 8080, protocol: 'http' }],
    identities: [`spiffe://mesh.test/ns/${namespace}/sa/${name}`],
    localities: [{ locality: 'r1/z1', healthy, total }],
  };
}

export function serviceEntry(s: ExportedService): [string, ExportedService] {
  return [serviceKey(s.zone, s.namespace, s.name), s];
}

/** A zone's delta as the global parses it, chunk by chunk. */
export function upLines(kind: UpKind, delta: SetDelta<unknown>, maxMessageBytes = 1024 * 1024): { message: DeltaMessage<UpKind>; bytes: number }[] {
  return chunkDelta(kind, delta, false, { maxMessageBytes, maxRecordBytes: 256 * 1024 }).map((line) => ({ message: parseUpMessage(line.trimEnd()) as DeltaMessage<UpKind>, bytes: Buffer.byteLength(line) }));
}

export function downLines(kind: DownKind, delta: SetDelta<unknown>, maxMessageBytes = 1024 * 1024): { message: DeltaMessage; bytes: number }[] {
  return chunkDelta(kind, delta, true, { maxMessageBytes, maxRecordBytes: 256 * 1024 }).map((line) => ({ message: parseDownMessage(line.trimEnd()) as DeltaMessage, bytes: Buffer.byteLength(line) }));
}

/** The code of what `fn` throws, or undefined when it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}
