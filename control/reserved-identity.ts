/**
 * The mesh's own identities, which no bootstrap credential may name.
 *
 * The control plane serves as `spiffe://<td>/ns/<root-namespace>/sa/trellis-control`, and agents send
 * their join token to whoever presents that ID from the mesh CA. A join token (or a Kubernetes
 * service-account token) for that name would hand a workload the control plane's identity, so the whole
 * root namespace is reserved: nothing legitimate bootstraps there (the injector never injects
 * `trellis-system`, the control plane issues its own serving certificate directly from its CA, and the
 * namespace's policies are mesh-wide, not a workload's). `trellis-system` stays reserved when the root
 * namespace is configured to another name, because an agent started without `--root-namespace` expects
 * its control plane there.
 *
 * Checked when a join token is created (CLI and API), when a credential is authenticated, and again when
 * a certificate is issued or renewed (defence in depth: whatever authenticated it).
 */
import { InputError, TrellisError } from '../common/errors.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { CODE } from '../common/error-codes.js';

export const RESERVED_IDENTITY_CODE = CODE.IDENTITY_RESERVED;

export function reservedNamespaces(rootNamespace: string = DEFAULT_ROOT_NAMESPACE): ReadonlySet<string> {
  return new Set([rootNamespace, DEFAULT_ROOT_NAMESPACE]);
}

export function isReservedIdentity(namespace: string, rootNamespace: string = DEFAULT_ROOT_NAMESPACE): boolean {
  return reservedNamespaces(rootNamespace).has(namespace);
}

function message(namespace: string, service: string): string {
  return `${namespace}/${service}: namespace "${namespace}" is reserved for the mesh's own services (the control plane's identity lives there); no join token or workload credential can name it`;
}

/** At token creation: bad operator input (exit 2 from the CLI, 400 from the API). */
export function refuseReservedToken(namespace: string, service: string, rootNamespace?: string): void {
  if (isReservedIdentity(namespace, rootNamespace)) throw new InputError(RESERVED_IDENTITY_CODE, message(namespace, service));
}

/** At authentication and issuance: a refused credential (403). */
export function refuseReservedIssuance(namespace: string, service: string, rootNamespace?: string): void {
  if (isReservedIdentity(namespace, rootNamespace)) throw new TrellisError(RESERVED_IDENTITY_CODE, message(namespace, service), { side: 'downstream' });
}
