/**
 * Pod and namespace keys that more than one layer reads: the injector writes them, the CNI plugin and the
 * node agent (capture/cni) read them, `trellis check` inspects them. One definition, so a renamed key
 * cannot leave the writer and the reader disagreeing.
 */

/** Namespace label (or the injector's mesh-wide default): how injected pods get their redirect rules. */
export const LABEL_CAPTURE_MODE = 'trellis.dev/capture-mode';

/**
 * `init`: a root init container with NET_ADMIN and NET_RAW installs the rules (fails Pod Security
 * baseline and restricted). `cni`: the Trellis CNI plugin installs them in the pod's network namespace
 * while the runtime sets it up, so the pod needs no privilege at all.
 */
export type CaptureMode = 'init' | 'cni';

export const CAPTURE_MODES: readonly CaptureMode[] = Object.freeze(['init', 'cni']);

/** Pod annotation the injector sets to the capture mode it injected for (`cni` marks pods for the plugin). */
export const ANNOTATION_CAPTURE = 'trellis.dev/capture';

/**
 * Pod annotation with the redirect the plugin installs, as JSON with the field names of the redirect
 * options (capture/options.ts): `{"platform":"pod","proxyUids":[1337],...}`. Written by the injector,
 * validated by the plugin like any other input.
 */
export const ANNOTATION_REDIRECT = 'trellis.dev/redirect';

export function parseCaptureMode(value: string | undefined): CaptureMode | undefined {
  return value === 'init' || value === 'cni' ? value : undefined;
}
