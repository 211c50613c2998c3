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
 * Other zones' sidecars accept exactly that name at an ingress address, the zone publishes where it runs as
 * the zone's ingress, and the control plane tells it every exported service: so no ordinary credential may
 * carry it either. A join token names it only when made for it (`trellis token create --ingress`, role
 * `ingress` in the signed claims and in the record, both checked when the token is used); a token for it
 * made like a workload's (`--service trellis-ingress --namespace <root>`) is refused, and a token made for
 * the ingress names nothing else. In Kubernetes its Deployment's service account in the root namespace
 * carries it (creating pods there is the cluster operator's). It gives no power over the mesh beyond
 * that: it is not the control plane's name, and every destination still authorizes the caller's own
 * identity end to end.
 */
import { InputError, TrellisError } from '../common/errors.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { CODE } from '../common/error-codes.js';
import { INGRESS_SERVICE } from '../api/zone-ingress.js';
import type { TokenRole } from '../api/control-protocol.js';

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

/** What is wrong with a token for (namespace, service) of `role`, or undefined when nothing is. */
function tokenProblem(namespace: string, service: string, rootNamespace: string | undefined, role: TokenRole | undefined): string | undefined {
  const ingress = isIngressIdentity(namespace, service, rootNamespace);
  if (role === 'ingress' && !ingress) return `a token for the zone ingress names ${rootNamespace ?? DEFAULT_ROOT_NAMESPACE}/${INGRESS_SERVICE}, not ${namespace}/${service}`;
  if (ingress && role !== 'ingress') return `${namespace}/${service} is the zone ingress's identity: only a token made for it carries it (\`trellis token create --ingress\`)`;
  if (isReservedIdentity(namespace, rootNamespace) && !ingress) return message(namespace, service);
  return undefined;
}

/** At token creation: bad operator input (exit 2 from the CLI, 400 from the API). */
export function refuseReservedToken(namespace: string, service: string, rootNamespace?: string, role?: TokenRole): void {
  const problem = tokenProblem(namespace, service, rootNamespace, role);
  if (problem !== undefined) throw new InputError(RESERVED_IDENTITY_CODE, problem);
}

/** When a join token is used: the same rule on its signed claims and its record, as a refused credential (403). */
export function refuseReservedTokenUse(namespace: string, service: string, rootNamespace: string | undefined, role: TokenRole | undefined): void {
  const problem = tokenProblem(namespace, service, rootNamespace, role);
  if (problem !== undefined) throw new TrellisError(RESERVED_IDENTITY_CODE, problem, { side: 'downstream' });
}

/** At authentication and issuance: a refused credential (403). */
export function refuseReservedIssuance(namespace: string, service: string, rootNamespace?: string): void {
  if (isReservedIdentity(namespace, rootNamespace) && !isIngressIdentity(namespace, service, rootNamespace)) throw new TrellisError(RESERVED_IDENTITY_CODE, message(namespace, service), { side: 'downstream' });
}
