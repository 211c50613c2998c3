/**
 * Splits one delta into messages of at most `maxMessageBytes` each (one JSON line), per kind. Records are
 * serialised once (the versioned set keeps their JSON) and the lines are assembled from those strings, so
 * sizing costs no second serialisation. A record that alone exceeds `maxRecordBytes` cannot be sent: the
 * error names its kind and key (Kuma's 10 MiB limit looped forever without saying which resource).
 */
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { ZONE_SYNC_LIMITS, type RemovalReason } from './protocol.js';
import type { SetDelta } from './versioned-set.js';

export interface ChunkLimits {
  readonly maxMessageBytes: number;
  readonly maxRecordBytes: number;
}

export function recordTooLarge(kind: string, key: string, bytes: number, limit: number): TrellisError {
  return new TrellisError(CODE.ZONE_SYNC_TOO_LARGE, `zone sync: the ${kind} record ${key} is ${bytes} bytes, over the ${limit}-byte limit; it is not sent (shrink it, or split it)`, {
    side: 'downstream',
    details: { kind, key, bytes, limit },
  });
}

/** Room for the envelope around the entries; the real envelope is far smaller. */
const ENVELOPE_BYTES = 512;

/**
 * The delta's lines (each ending in "\n"). An oversized record throws, or with `onOversized` is reported
 * there and left out (the others are sent). `withReasons` chooses the removal form: down messages say why
 * ({key, reason}), up messages carry bare keys (a zone only ever deletes).
 */
export function chunkDelta<R>(kind: string, delta: SetDelta<R>, withReasons: boolean, limits: ChunkLimits = ZONE_SYNC_LIMITS, onOversized?: (err: TrellisError) => void): string[] {
  const parts: { ups: string[]; rms: string[]; bytes: number }[] = [{ ups: [], rms: [], bytes: 0 }];
  const budget = limits.maxMessageBytes - ENVELOPE_BYTES;
  const add = (text: string, upsert: boolean): void => {
    const bytes = Buffer.byteLength(text) + 1;
    let part = parts[parts.length - 1] as { ups: string[]; rms: string[]; bytes: number };
    if (part.bytes + bytes > budget && part.ups.length + part.rms.length > 0) {
      part = { ups: [], rms: [], bytes: 0 };
      parts.push(part);
    }
    (upsert ? part.ups : part.rms).push(text);
    part.bytes += bytes;
  };
  for (const u of delta.upserts) {
    const bytes = Buffer.byteLength(u.json);
    if (bytes > limits.maxRecordBytes) {
      const err = recordTooLarge(kind, u.key, bytes, limits.maxRecordBytes);
      // A sender that can go on without the record reports it and sends the rest.
      if (onOversized === undefined) throw err;
      onOversized(err);
      continue;
    }
    add(`{"key":${JSON.stringify(u.key)},"record":${u.json}}`, true);
  }
  for (const r of delta.removes) add(withReasons ? JSON.stringify({ key: r.key, reason: r.reason satisfies RemovalReason }) : JSON.stringify(r.key), false);
  return parts.map((part, seq) => {
    const head = `{"t":"delta","kind":${JSON.stringify(kind)},"from":${delta.from},"to":${delta.to},"seq":${seq},"last":${seq === parts.length - 1},"reset":${delta.reset},"at":${delta.at}`;
    return `${head},"upserts":[${part.ups.join(',')}],"removes":[${part.rms.join(',')}]}\n`;
  });
}
