/**
 * What the figures were measured on: CPU, kernel, tool versions and the load average, recorded with the
 * results because a number from a busy 2-core machine means little without them.
 */
import { execFile } from 'node:child_process';
import { cpus, loadavg, release } from 'node:os';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cpuCount: number;
  readonly kernel: string;
  readonly node: string;
  readonly tools: Readonly<Record<string, string>>;
  /** 1, 5 and 15 minute load averages when the run started (and ended). */
  readonly loadAverageBefore: readonly number[];
  readonly loadAverageAfter?: readonly number[];
}

function firstLine(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, [...args], { timeout: 5_000 }, (err, stdout, stderr) => {
      const text = `${stdout}${stderr}`.trim().split('\n')[0] ?? '';
      resolve(err !== null && text === '' ? 'not found' : text);
    });
  });
}

export async function describeMachine(): Promise<MachineInfo> {
  const [haproxy, nginx, wrk, h2load] = await Promise.all([
    firstLine('haproxy', ['-v']),
    firstLine('nginx', ['-v']),
    firstLine('wrk', ['-v']),
    firstLine('h2load', ['--version']),
  ]);
  const cpuList = cpus();
  return {
    cpuModel: cpuList[0]?.model ?? 'unknown',
    cpuCount: cpuList.length,
    kernel: release(),
    node: process.version,
    tools: { haproxy, nginx, wrk, h2load },
    loadAverageBefore: loadavg().map((v) => Math.round(v * 100) / 100),
  };
}
