/**
 * The zone sync protocol (version 1) between a zone control plane and the global control plane. The zone
 * dials out and opens one long-lived HTTP/2 stream (`POST /v1/zone/sync`, mutual TLS with its zone
 * identity); both directions carry newline-delimited JSON messages on it. docs/architecture.md ("Zones")
 * describes the whole exchange; this file holds the wire types, the limits and the strict parsers.
 *
 *   zone → global   hello, delta (kinds service | ingress | trust), renew
 *   global → zone   welcome, delta (kinds service | ingress | trust | policy), ack, error
 *
 * A delta names the receiver's version it follows (`from`) and the version it leads to (`to`); it is split
 * into chunks (`seq` 0, 1, ...; `last` on the final one) that the receiver applies together or not at all.
 * Every parser here refuses anything it does not know with TRELLIS_ZONE_SYNC_MALFORMED: a message that
 * cannot be understood must never be half understood.
 */
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';

export const ZONE_SYNC_PROTOCOL_VERSION = 1;

export const ZONE_SYNC_PATHS = Object.freeze({
  sync: '/v1/zone/sync',
  bootstrap: '/v1/zone/bootstrap',
  renew: '/v1/zone/renew',
  /** The zone's golden-metrics edge view (control/global/zone-golden.ts): a request of its own, not a sync message. */
  golden: '/v1/zone/golden',
});

export const ZONE_SYNC_LIMITS = Object.freeze({
  /** One message (one line); a delta larger than this is chunked. Kuma's KDS limit is 10 MiB and its users hit it. */
  maxMessageBytes: 1024 * 1024,
  /** One record, serialised: a record this large cannot be chunked and is refused by name. */
  maxRecordBytes: 256 * 1024,
  /** All chunks of one delta held before it is applied. */
  maxDeltaBytes: 64 * 1024 * 1024,
  /** Records of one kind one zone may hold (and the catalogue of one kind). */
  maxRecordsPerKind: 200_000,
  maxKeyLength: 512,
});

/** What zones send up. */
export const UP_KINDS = ['service', 'ingress', 'trust'] as const;
/** What the global sends down: other zones' records of the up kinds, and the mesh-wide policies. */
export const DOWN_KINDS = ['service', 'ingress', 'trust', 'policy'] as const;
export type UpKind = (typeof UP_KINDS)[number];
export type DownKind = (typeof DOWN_KINDS)[number];
export type SyncKind = DownKind;

/** Why a record left a catalogue: its zone removed it, or its zone stopped renewing its lease. */
export type RemovalReason = 'deleted' | 'zone-offline';
export const REMOVAL_REASONS: readonly RemovalReason[] = ['deleted', 'zone-offline'];

export type Versions<K extends string> = Readonly<Record<K, number>>;

export interface HelloMessage {
  readonly t: 'hello';
  readonly protocol: number;
  readonly zone: string;
  /** This zone's sync state instance: a new epoch means the zone's versions start again. */
  readonly epoch: string;
  /** The global's epoch the zone's catalogue came from (absent on first contact). */
  readonly globalEpoch?: string;
  /** The catalogue versions the zone holds, per kind. */
  readonly down: Versions<DownKind>;
}

export interface WelcomeMessage {
  readonly t: 'welcome';
  readonly protocol: number;
  readonly globalEpoch: string;
  /** The zone's versions the global holds, per kind. */
  readonly applied: Versions<UpKind>;
  /** Whether `applied` is of the zone's current epoch; if not, the zone sends whole sets (resets). */
  readonly resume: boolean;
  readonly leaseMs: number;
  /** The mesh-wide export default for services the zone has no explicit setting for. */
  readonly exportDefault: ExportDefault;
}

export type ExportDefault = 'all' | 'none';

export interface SyncRecordEntry {
  readonly key: string;
  readonly record: unknown;
}

export interface RemovedEntry {
  readonly key: string;
  readonly reason: RemovalReason;
}

export interface DeltaMessage<K extends string = SyncKind> {
  readonly t: 'delta';
  readonly kind: K;
  readonly from: number;
  readonly to: number;
  readonly seq: number;
  readonly last: boolean;
  /** Replace everything of this kind (the receiver's `from` must be 0): sent when deltas cannot be. */
  readonly reset: boolean;
  /** When the sender made the newest change in this delta (ms since the epoch), for sync lag. */
  readonly at: number;
  readonly upserts: readonly SyncRecordEntry[];
  readonly removes: readonly RemovedEntry[];
}

export interface RenewMessage {
  readonly t: 'renew';
}

export interface AckMessage {
  readonly t: 'ack';
  readonly kind: UpKind;
  readonly version: number;
}

export interface ErrorMessage {
  readonly t: 'error';
  readonly code: string;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

export type UpMessage = HelloMessage | DeltaMessage<UpKind> | RenewMessage;
export type DownMessage = WelcomeMessage | DeltaMessage | AckMessage | ErrorMessage;

export function malformed(message: string, details?: Record<string, unknown>): TrellisError {
  return new TrellisError(CODE.ZONE_SYNC_MALFORMED, `zone sync: ${message}`, { side: 'downstream', ...(details === undefined ? {} : { details }) });
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function onlyFields(value: Json, allowed: readonly string[], what: string): void {
  for (const field of Object.keys(value)) if (!allowed.includes(field)) throw malformed(`${what} has an unknown field "${field}"`);
}

export function isVersion(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Zone names: DNS labels, like Kubernetes namespaces. */
export const ZONE_NAME = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const EPOCH = /^[A-Za-z0-9_-]{8,64}$/;
/** A record key: `/`-separated segments of DNS-ish characters, the first naming the owning zone for up kinds. */
const KEY = /^[a-z0-9][-a-z0-9.]*(?:\/[a-z0-9*][-a-z0-9.*]*)*$/;

function versions<K extends string>(value: unknown, kinds: readonly K[], what: string): Versions<K> {
  if (!isObject(value)) throw malformed(`${what} must be an object of versions`);
  onlyFields(value, kinds, what);
  const out = {} as Record<K, number>;
  for (const kind of kinds) {
    const v = value[kind] ?? 0;
    if (!isVersion(v)) throw malformed(`${what}.${kind} must be a whole number ≥ 0`);
    out[kind] = v;
  }
  return Object.freeze(out);
}

export function checkKey(key: unknown, kind: string): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > ZONE_SYNC_LIMITS.maxKeyLength || !KEY.test(key)) {
    throw malformed(`a ${kind} key is not a record key`, { kind, key: typeof key === 'string' ? key.slice(0, 120) : typeof key });
  }
  return key;
}

/** The zone that owns a key of an up kind: its first segment. */
export function ownerOf(key: string): string {
  const slash = key.indexOf('/');
  return slash < 0 ? key : key.slice(0, slash);
}

function parseDelta<K extends string>(value: Json, kinds: readonly K[], removalsWithReason: boolean): DeltaMessage<K> {
  onlyFields(value, ['t', 'kind', 'from', 'to', 'seq', 'last', 'reset', 'at', 'upserts', 'removes'], 'delta');
  const kind = value.kind as K;
  if (!kinds.includes(kind)) throw malformed(`delta kind "${String(value.kind)}" is not one of ${kinds.join(', ')}`);
  const { from, to, seq, at } = value;
  if (!isVersion(from) || !isVersion(to) || !isVersion(seq) || !isVersion(at)) throw malformed(`${kind} delta: from, to, seq and at must be whole numbers ≥ 0`);
  if (to < from) throw malformed(`${kind} delta: to (${to}) is before from (${from})`);
  if (typeof value.last !== 'boolean' || typeof value.reset !== 'boolean') throw malformed(`${kind} delta: last and reset must be booleans`);
  if (value.reset && from !== 0) throw malformed(`${kind} delta: a reset starts from 0`);
  if (!Array.isArray(value.upserts) || !Array.isArray(value.removes)) throw malformed(`${kind} delta: upserts and removes must be lists`);
  const upserts = value.upserts.map((entry: unknown) => {
    if (!isObject(entry)) throw malformed(`${kind} delta: an upsert must be {key, record}`);
    onlyFields(entry, ['key', 'record'], `${kind} upsert`);
    if (!isObject(entry.record)) throw malformed(`${kind} delta: the record of ${String(entry.key)} must be an object`);
    return Object.freeze({ key: checkKey(entry.key, kind), record: entry.record });
  });
  const removes = value.removes.map((entry: unknown): RemovedEntry => {
    if (!removalsWithReason) return Object.freeze({ key: checkKey(entry, kind), reason: 'deleted' });
    if (!isObject(entry)) throw malformed(`${kind} delta: a removal must be {key, reason}`);
    onlyFields(entry, ['key', 'reason'], `${kind} removal`);
    if (!REMOVAL_REASONS.includes(entry.reason as RemovalReason)) throw malformed(`${kind} delta: removal reason "${String(entry.reason)}" is unknown`);
    return Object.freeze({ key: checkKey(entry.key, kind), reason: entry.reason as RemovalReason });
  });
  if (value.reset && removes.length > 0) throw malformed(`${kind} delta: a reset carries no removals`);
  return Object.freeze({ t: 'delta', kind, from, to, seq, last: value.last, reset: value.reset, at, upserts: Object.freeze(upserts), removes: Object.freeze(removes) });
}

function parseLine(line: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw malformed('a message is not JSON');
  }
  if (!isObject(value) || typeof value.t !== 'string') throw malformed('a message must be a JSON object with a type "t"');
  return value;
}

export function checkProtocol(protocol: unknown): void {
  if (protocol !== ZONE_SYNC_PROTOCOL_VERSION) {
    throw new TrellisError(CODE.ZONE_SYNC_PROTOCOL, `zone sync protocol ${String(protocol)} is not supported (this side speaks ${ZONE_SYNC_PROTOCOL_VERSION})`, { side: 'downstream' });
  }
}

export function parseUpMessage(line: string): UpMessage {
  const value = parseLine(line);
  switch (value.t) {
    case 'hello': {
      onlyFields(value, ['t', 'protocol', 'zone', 'epoch', 'globalEpoch', 'down'], 'hello');
      checkProtocol(value.protocol);
      if (typeof value.zone !== 'string' || !ZONE_NAME.test(value.zone)) throw malformed('hello: zone must be a DNS label');
      if (typeof value.epoch !== 'string' || !EPOCH.test(value.epoch)) throw malformed('hello: epoch must be 8-64 of A-Z a-z 0-9 _ -');
      if (value.globalEpoch !== undefined && (typeof value.globalEpoch !== 'string' || !EPOCH.test(value.globalEpoch))) throw malformed('hello: globalEpoch is malformed');
      const hello: HelloMessage = {
        t: 'hello', protocol: value.protocol as number, zone: value.zone, epoch: value.epoch,
        ...(value.globalEpoch === undefined ? {} : { globalEpoch: value.globalEpoch as string }),
        down: versions(value.down, DOWN_KINDS, 'hello.down'),
      };
      return Object.freeze(hello);
    }
    case 'delta':
      return parseDelta(value, UP_KINDS, false);
    case 'renew':
      onlyFields(value, ['t'], 'renew');
      return Object.freeze({ t: 'renew' });
    default:
      throw malformed(`message type "${value.t}" is not one a zone sends`);
  }
}

export function parseDownMessage(line: string): DownMessage {
  const value = parseLine(line);
  switch (value.t) {
    case 'welcome': {
      onlyFields(value, ['t', 'protocol', 'globalEpoch', 'applied', 'resume', 'leaseMs', 'exportDefault'], 'welcome');
      if (typeof value.resume !== 'boolean') throw malformed('welcome: resume must be a boolean');
      checkProtocol(value.protocol);
      if (typeof value.globalEpoch !== 'string' || !EPOCH.test(value.globalEpoch)) throw malformed('welcome: globalEpoch is malformed');
      if (!isVersion(value.leaseMs) || value.leaseMs < 1) throw malformed('welcome: leaseMs must be a positive whole number');
      if (value.exportDefault !== 'all' && value.exportDefault !== 'none') throw malformed('welcome: exportDefault must be all or none');
      return Object.freeze({ t: 'welcome', protocol: value.protocol as number, globalEpoch: value.globalEpoch, applied: versions(value.applied, UP_KINDS, 'welcome.applied'), resume: value.resume, leaseMs: value.leaseMs, exportDefault: value.exportDefault });
    }
    case 'delta':
      return parseDelta(value, DOWN_KINDS, true);
    case 'ack':
      onlyFields(value, ['t', 'kind', 'version'], 'ack');
      if (!UP_KINDS.includes(value.kind as UpKind) || !isVersion(value.version)) throw malformed('ack: kind and version are malformed');
      return Object.freeze({ t: 'ack', kind: value.kind as UpKind, version: value.version });
    case 'error':
      if (typeof value.code !== 'string' || typeof value.message !== 'string') throw malformed('error: code and message must be strings');
      return Object.freeze({ t: 'error', code: value.code.slice(0, 100), message: value.message.slice(0, 2000), ...(isObject(value.details) ? { details: value.details } : {}) });
    default:
      throw malformed(`message type "${value.t}" is not one the global sends`);
  }
}
