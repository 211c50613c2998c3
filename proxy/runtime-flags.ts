/**
 * The V8 heap sizing a sidecar process is started with. Whatever launches `trellis proxy run` or
 * `trellis agent run` passes these to `node` before the script (or puts them in `NODE_OPTIONS`, which
 * accepts both): V8 sizes its heap once, when the process starts, so the sidecar cannot set them itself.
 *
 * Why, measured on the benchmark's pair (`npm run bench`, docs/architecture.md "Performance notes"):
 * - `--max-semi-space-size=2` (MiB). V8's default young generation grows to 16 MiB per semi-space
 *   (up to 48 MiB of young generation). A proxy allocates a few KiB per request that die within the
 *   request, so a 2 MiB nursery is scavenged more often but with as few survivors; peak RSS under load
 *   fell by ~30 MiB per sidecar with no measurable change in CPU per request.
 * - `--max-old-space-size=256` (MiB). With no limit V8 lets the old generation grow towards its
 *   default limit (about 4 GiB on this 24 GiB machine) before it first compacts, so the old space of a busy sidecar held
 *   ~30 MiB of garbage over ~10 MiB live. A stated limit also makes V8 start with a proportionally
 *   smaller old-generation allocation limit, so it collects early. 256 MiB is far above what a sidecar
 *   holds live (~10 MiB at the benchmark's load; each open connection costs a few KiB) and below the
 *   injected container's 512 MiB memory limit, so a leak fails as a V8 heap error the agent logs rather
 *   than as a kernel OOM kill of the whole pod's sidecar.
 */

/** Node options for a sidecar process (proxy or agent), in the order they are passed. */
export const SIDECAR_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=2', '--max-old-space-size=256']);

/** The same options as one `NODE_OPTIONS` value, for launchers that set the environment instead. */
export const SIDECAR_NODE_OPTIONS: string = SIDECAR_NODE_FLAGS.join(' ');
