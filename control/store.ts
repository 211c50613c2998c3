/**
 * Where the control plane keeps its state, behind one interface: the embedded file store today
 * (`file-store.ts`), the Kubernetes API or PostgreSQL later. Everything here is small, durable state:
 * secrets the control plane made, join-token records, and agent registrations. The CA's keys live with
 * the CA module in the data dir; live state (who is connected right now) lives only in memory.
 */
import type { RegisteredPort, TokenRecordView, UpstreamRef } from '../api/control-protocol.js';
import type { InstanceOwner } from './instance-ownership.js';

/**
 * A join token's record: the fields the API shows (`TokenRecordView`: id, service, namespace, times, `uses`
 * allowed, absent on records made before use counts, and `usesLeft`, decremented durably before a
 * certificate is handed out), with the certificates themselves instead of their count.
 */
export interface TokenRecord extends Omit<TokenRecordView, 'certificates'> {
  /** Unexpired certificates issued through the token and their renewals: what revoking it revokes. */
  readonly certificates?: readonly IssuedCertificate[];
}

export interface IssuedCertificate {
  /** `normaliseSerial` form. */
  readonly serial: string;
  /** ISO-8601. */
  readonly notAfter: string;
}

/** A registration as the store keeps it: what an agent said, plus who it proved to be. */
export interface StoredRegistration {
  readonly instanceId: string;
  readonly service: string;
  readonly namespace: string;
  readonly zone: string;
  readonly address: string;
  readonly tunnelPort: number;
  readonly ports: readonly RegisteredPort[];
  readonly upstreams: readonly UpstreamRef[];
  readonly healthy: boolean;
  readonly updatedAt: string;
  /** Workload labels (`Registration.labels`), copied to its endpoint for TrafficRoute backends. */
  readonly labels?: Readonly<Record<string, string>>;
  /** The workload's or platform's word on exporting its service to other zones (`Registration.export`); absent: no word. */
  readonly export?: boolean;
  /** The certificate (and workload) that registered it; absent in records written before owners were kept. */
  readonly owner?: InstanceOwner;
}

/** Secrets the control plane generates once and keeps: each is 32 random bytes, base64url. */
export type SecretName = 'admin-token' | 'token-signing-key';

export interface ControlStore {
  /** Where a human finds the state (a directory, a database URL), for messages. */
  readonly location: string;
  /** The named secret, created (randomly) on first use. */
  secret(name: SecretName): Promise<string>;
  putToken(record: TokenRecord): Promise<void>;
  getToken(id: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<readonly TokenRecord[]>;
  putRegistration(registration: StoredRegistration): Promise<void>;
  deleteRegistration(instanceId: string): Promise<void>;
  /** Registrations that could be read; unreadable ones are reported through `onCorrupt` and skipped. */
  listRegistrations(onCorrupt?: (file: string, reason: string) => void): Promise<readonly StoredRegistration[]>;
  /** Reads every record once and throws TRELLIS_STORE_CORRUPT naming the first file that is damaged. */
  check(): Promise<void>;
}
