/**
 * `trellis cni plugin`: what the container runtime executes (through the shim in /opt/cni/bin). Reads
 * CNI_* from the environment and the network configuration from stdin, runs one CNI command, and prints
 * the result, or a CNI error object on stdout with exit status 1, as the spec asks. Nothing else is
 * printed on stdout: the runtime parses it.
 */
import { CNI_ERROR, CniError, errorResult, parseCniEnvironment, parsePluginConfig, versionResult, type TrellisPluginConfig } from '../capture/cni/protocol.js';
import { runPlugin } from '../capture/cni/plugin.js';
import { apiPodLookup, netnsExists, netnsPathRunner } from '../capture/cni/runtime.js';
import { EXIT_FAILURE, EXIT_OK, type CommandContext } from './command.js';

/** A network configuration is a few KiB; a runaway writer on stdin is cut off here. */
const MAX_STDIN_BYTES = 1024 * 1024;

async function readStdin(stream: NodeJS.ReadableStream | undefined): Promise<string> {
  if (stream === undefined) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buffer.length;
    if (size > MAX_STDIN_BYTES) throw new CniError(CNI_ERROR.DECODE_FAILURE, `the network configuration on stdin is larger than ${MAX_STDIN_BYTES} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function requestedVersion(stdin: string): string | undefined {
  try {
    const version = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof version === 'string' ? version : undefined;
  } catch {
    return undefined;
  }
}

export async function cniPlugin(ctx: CommandContext): Promise<number> {
  let version = '1.1.0';
  try {
    const env = parseCniEnvironment(ctx.env);
    const stdin = await readStdin(ctx.stdin);
    if (env.command === 'VERSION') {
      // VERSION's stdin holds only {"cniVersion": ...}: answer in that version when it is one we speak.
      ctx.stdout.write(`${JSON.stringify(versionResult(requestedVersion(stdin)))}\n`);
      return EXIT_OK;
    }
    let config: TrellisPluginConfig | undefined;
    if (stdin.trim() !== '') {
      config = parsePluginConfig(stdin);
      version = config.cniVersion;
    }
    const lookups = new Map<string, ReturnType<typeof apiPodLookup>>();
    const result = await runPlugin(env, config, {
      pods: (c) => {
        if (c.kubeconfig === undefined) return undefined;
        let lookup = lookups.get(c.kubeconfig);
        if (lookup === undefined) lookups.set(c.kubeconfig, (lookup = apiPodLookup(c.kubeconfig)));
        return lookup;
      },
      runnerFor: (path) => netnsPathRunner(path),
      netnsExists,
    });
    if (result !== undefined) ctx.stdout.write(`${JSON.stringify(result)}\n`);
    return EXIT_OK;
  } catch (err) {
    const cniError = err instanceof CniError ? err : new CniError(CNI_ERROR.IO_FAILURE, `trellis-cni failed: ${(err as Error).message}`);
    ctx.stdout.write(`${JSON.stringify(errorResult(version, cniError))}\n`);
    ctx.stderr.write(`trellis-cni: ${cniError.message}\n`);
    return EXIT_FAILURE;
  }
}
