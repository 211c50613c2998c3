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
 *
 * Re-checked on Node 24.21.0 (V8 13.6), the runtime the project now pins; kept as they are. Both flags
 * still act (a churning process's new space stays at 4 MiB with them, 16 MiB without, as on Node 20).
 * Semi-spaces of 1, 2 and 4 MiB on the benchmark's keep-alive runs (one 5 s run each, on a shared
 * machine at load average 13-14, so only the memory figures mean much): RSS after the run, anonymous
 * 30.7-35.3 / 31.6-31.9 / 33.3-34.4 MiB per sidecar, peaks 84-88 / 85-89 / 88-91 MiB: 1 MiB saved
 * nothing over 2, 4 MiB cost ~3 MiB. What grew with Node 24 is not the heap: the file-backed part (pages of
 * the node executable) is ~53 MiB in a loaded sidecar against ~42 on Node 20, and an idle sidecar is
 * ~70 MiB (~24 anonymous) against ~59 (~19). No V8 flag moves file-backed pages; --max-lazy and
 * --no-maglev changed the idle figure by less than its run-to-run noise (±5 MiB).
 */

/** Node options for a sidecar process (proxy or agent), in the order they are passed. */
export const SIDECAR_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=2', '--max-old-space-size=256']);

/** The same options as one `NODE_OPTIONS` value, for launchers that set the environment instead. */
export const SIDECAR_NODE_OPTIONS: string = SIDECAR_NODE_FLAGS.join(' ');
