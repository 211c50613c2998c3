/**
 * The zone ingress's place in the mesh. It is a workload of the zone's root namespace named
 * `trellis-ingress` (`spiffe://<td>/ns/<root-namespace>/sa/trellis-ingress`): callers of other zones accept
 * only that identity at an ingress address, and the zone control plane publishes the registered instances
 * of that service upward as the zone's ingress addresses (never as an exported service).
 */
export const INGRESS_SERVICE = 'trellis-ingress';
