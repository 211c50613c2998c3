/**
 * Certificate issuance: turns an authenticated identity and a CSR into a leaf from the zone CA, with the
 * chain and the trust bundle the workload needs. The identity always comes from the credential (a join
 * token, the current certificate); the CSR only proves the workload holds the key.
 */
import type { IssueResponse } from '../api/control-protocol.js';
import type { CertificateAuthority } from '../ca/authority.js';
import { createCsr, generateWorkloadKey } from '../ca/csr.js';
import { workloadId } from '../ca/spiffe-id.js';
import { MAX_CSR_PEM_BYTES } from '../ca/csr.js';
import { InputError } from '../common/errors.js';
import { refuseReservedIssuance } from './reserved-identity.js';
import { CODE } from '../common/error-codes.js';

export interface IssuerOptions {
  readonly ca: CertificateAuthority;
  readonly zone: string;
  readonly workloadTtlMs: number;
  readonly trustBundlePem: () => string;
  /** The root namespace, whose identities are reserved (reserved-identity.ts); default `trellis-system`. */
  readonly rootNamespace?: string;
}

export class IdentityIssuer {
  constructor(private readonly options: IssuerOptions) {}

  get trustDomain(): string {
    return this.options.ca.trustDomain;
  }

  async issue(csrPem: unknown, namespace: string, service: string): Promise<IssueResponse> {
    if (typeof csrPem !== 'string' || csrPem.length === 0) throw new InputError(CODE.CSR_MISSING, 'the request needs "csrPem": a PEM certificate signing request');
    if (csrPem.length > MAX_CSR_PEM_BYTES) throw new InputError(CODE.CSR_TOO_LARGE, `the CSR is larger than ${MAX_CSR_PEM_BYTES} bytes`);
    // Whatever authenticated the caller: the mesh's own identities are never issued through the API.
    refuseReservedIssuance(namespace, service, this.options.rootNamespace);
    const id = workloadId(this.trustDomain, namespace, service);
    const signed = await this.options.ca.signCsr(csrPem, id, { ttlMs: this.options.workloadTtlMs });
    return {
      spiffeId: id.toString(),
      certChainPem: signed.certChainPem,
      trustBundlePem: this.options.trustBundlePem(),
      notAfter: signed.notAfter.toISOString(),
      serial: signed.serial,
      trustDomain: this.trustDomain,
      zone: this.options.zone,
    };
  }

  /** The control plane's own serving certificate, for `spiffe://<td>/ns/<rootNamespace>/sa/trellis-control`. */
  async serving(rootNamespace: string, service: string): Promise<{ certChainPem: string; keyPem: string; notAfter: Date }> {
    const key = await generateWorkloadKey();
    const id = workloadId(this.trustDomain, rootNamespace, service);
    const signed = await this.options.ca.signCsr(await createCsr(key, id), id, { ttlMs: this.options.workloadTtlMs });
    return { certChainPem: signed.certChainPem, keyPem: key.keyPem, notAfter: signed.notAfter };
  }
}
