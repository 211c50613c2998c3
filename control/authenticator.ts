/**
 * Bootstrap authentication: who is asking for its first certificate. Pluggable, because the credential
 * depends on where the workload runs: a join token on a VM (`token-service.ts`), a projected
 * service-account token verified by TokenReview in Kubernetes (its own authenticator, later). The
 * credential alone decides the workload's identity; the CSR's own claims are ignored.
 */
export interface AuthenticatedWorkload {
  readonly namespace: string;
  readonly service: string;
  /** What authenticated it, for logs and metrics, e.g. "join-token:3f9c…". */
  readonly credential: string;
  /**
   * For a credential with limited uses (a join token): runs the issuance as one use, re-checked, issued
   * and recorded durably before the certificate is returned. Absent: the credential is not consumed.
   */
  readonly spend?: <T extends { readonly serial: string; readonly notAfter: string }>(issue: () => Promise<T>) => Promise<T>;
}

export interface BootstrapAuthenticator {
  /** A short name for metrics labels: "join-token", "k8s-sa-token". */
  readonly kind: string;
  /** Whether this authenticator recognises the credential's format (the first match is asked). */
  accepts(bearer: string): boolean;
  /** Throws a TrellisError (side `downstream`) with a stable code when the credential is refused. */
  authenticate(bearer: string): Promise<AuthenticatedWorkload>;
}
