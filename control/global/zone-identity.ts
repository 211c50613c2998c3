/**
 * The identities of the multi-zone control path. A zone control plane proves its zone name with a
 * certificate for `spiffe://<td>/ns/<root-ns>/sa/trellis-zone-<zone>`, issued by the global through a zone
 * token; the global serves as `.../sa/trellis-global`. Workloads cannot hold either: join tokens and
 * service-account tokens never name the root namespace (control/reserved-identity.ts).
 */
import type { X509Certificate } from 'node:crypto';
import { workloadId, type SpiffeId } from '../../ca/spiffe-id.js';
import { verifyPeerCertificate } from '../../ca/verify.js';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { normaliseSerial } from '../../api/control-protocol.js';
import { ZONE_NAME } from '../zone-sync/protocol.js';

export const GLOBAL_SERVICE = 'trellis-global';
export const ZONE_SERVICE_PREFIX = 'trellis-zone-';

export function zoneIdentity(trustDomain: string, rootNamespace: string, zone: string): SpiffeId {
  return workloadId(trustDomain, rootNamespace, `${ZONE_SERVICE_PREFIX}${zone}`);
}

export function globalIdentity(trustDomain: string, rootNamespace: string): SpiffeId {
  return workloadId(trustDomain, rootNamespace, GLOBAL_SERVICE);
}

/** The zone a verified client certificate proves, and its serial; refuses any other certificate. */
export function zoneOfCertificate(cert: X509Certificate, trustDomain: string, rootNamespace: string): { zone: string; serial: string } {
  const peer = verifyPeerCertificate(cert, { trustDomain });
  const zone = peer.service.startsWith(ZONE_SERVICE_PREFIX) ? peer.service.slice(ZONE_SERVICE_PREFIX.length) : '';
  if (peer.namespace !== rootNamespace || !ZONE_NAME.test(zone)) {
    throw new TrellisError(CODE.CONTROL_CLIENT_CERT_UNTRUSTED, `${peer.spiffeId} is not a zone control plane's identity`, { side: 'downstream' });
  }
  return { zone, serial: normaliseSerial(cert.serialNumber) };
}
