/**
 * Which workload a certificate belongs to, across renewals: serial → the serial its renewal chain started
 * from (a certificate issued with a bootstrap credential starts a chain of its own).
 *
 * Instances are owned by the workload, not by one certificate, because an agent renews with a new key
 * every half lifetime and must keep its instance. Renewal happens over mutual TLS with the current
 * certificate, so the control plane sees both ends of each link and records it here. The agent
 * re-registers with the new certificate right after renewing, and the instance then stores the new serial
 * (`InstanceOwner`); after a restart those stored owners seed this map again, so only a link made just
 * before a restart and not yet used is lost (its agent is refused until the old instance's lease ends).
 *
 * Bounded: oldest links go first, and a link is needed only until its agent re-registers.
 */
import type { InstanceOwner } from './instance-ownership.js';

export const MAX_LINEAGE_ENTRIES = 100_000;

export class CertificateLineage {
  private readonly workloads = new Map<string, string>();

  constructor(private readonly maxEntries = MAX_LINEAGE_ENTRIES) {}

  /** The workload of a certificate: the first serial of its renewal chain (itself, when it starts one). */
  workloadOf(serial: string): string {
    return this.workloads.get(serial) ?? serial;
  }

  /** `next` was issued to the holder of `current` (a renewal). */
  renewed(current: string, next: string): void {
    this.set(next, this.workloadOf(current));
  }

  /** An owner read from the store after a restart. */
  remember(owner: InstanceOwner): void {
    if (owner.serial !== owner.workload) this.set(owner.serial, owner.workload);
  }

  private set(serial: string, workload: string): void {
    this.workloads.delete(serial);
    this.workloads.set(serial, workload);
    if (this.workloads.size > this.maxEntries) this.workloads.delete(this.workloads.keys().next().value as string);
  }
}
