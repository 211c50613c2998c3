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
 *
 * One name there is not reserved: `<root-namespace>/trellis-ingress`, the zone ingress (api/zone-ingress.ts).
 * It joins like any workload (a join token, or its Deployment's service account), and other zones' sidecars
 * accept exactly that name at an ingress address. It gives no power over the mesh: it is not the control
 * plane's name, root-namespace policies are not a workload's, and every destination still authorizes the
 * caller's own identity end to end.
 */
import { InputError, TrellisError } from '../common/errors.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { CODE } from '../common/error-codes.js';
import { INGRESS_SERVICE } from '../api/zone-ingress.js';

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

/** The zone ingress's own name, the one name of the root namespace a credential may carry. */
export function isIngressIdentity(namespace: string, service: string, rootNamespace: string = DEFAULT_ROOT_NAMESPACE): boolean {
  return namespace === rootNamespace && service === INGRESS_SERVICE;
}

/** At token creation: bad operator input (exit 2 from the CLI, 400 from the API). */
export function refuseReservedToken(namespace: string, service: string, rootNamespace?: string): void {
  if (isReservedIdentity(namespace, rootNamespace) && !isIngressIdentity(namespace, service, rootNamespace)) throw new InputError(RESERVED_IDENTITY_CODE, message(namespace, service));
}

/** At authentication and issuance: a refused credential (403). */
export function refuseReservedIssuance(namespace: string, service: string, rootNamespace?: string): void {
  if (isReservedIdentity(namespace, rootNamespace) && !isIngressIdentity(namespace, service, rootNamespace)) throw new TrellisError(RESERVED_IDENTITY_CODE, message(namespace, service), { side: 'downstream' });
}
