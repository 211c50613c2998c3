/**
 * The human-readable report: one table row per (scenario, pair) with the medians, then the targets with
 * their marks, then what the figures were measured on. Plain text with aligned columns, so it reads the
 * same in a terminal, a CI log and a pasted note.
 */
import { PAIR_TITLES, type PairName } from './pair.js';
import type { BenchRun } from './runner.js';
import { scenarioById } from './scenarios.js';
import type { BenchSummary, CellSummary } from './summary.js';

const MIB = 1024 * 1024;

function ms(us: number | undefined): string {
  if (us === undefined || !Number.isFinite(us)) return '—';
  return (us / 1000).toFixed(us < 10_000 ? 3 : 1);
}

function signedMs(us: number | undefined): string {
  if (us === undefined || !Number.isFinite(us)) return '—';
  return `${us >= 0 ? '+' : ''}${ms(us)}`;
}

function perSidecar(cell: CellSummary, f: (s: CellSummary['sidecars'][number]) => string): string {
  return cell.sidecars.length === 0 ? '—' : cell.sidecars.map(f).join(' / ');
}

export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function renderReport(run: BenchRun, summary: BenchSummary): string {
  const out: string[] = [];
  out.push(
    `Trellis benchmark: ${run.options.rounds} round(s) × ${run.options.seconds} s per run (after ${run.options.warmupSeconds} s warm-up), medians across rounds; errors summed.`,
  );
  out.push('');
  const headers = ['scenario', 'pair', 'req/s', 'MiB/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'added p99', 'errors', 'non-2xx', 'peak RSS MiB (cli/srv)', 'CPU s (cli/srv)', 'CPU µs/req (cli/srv)'];
  out.push(renderTable(headers, resultRows(run, summary, headers.length), new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])));
  for (const pair of [...new Set(summary.unserved.map((u) => u.pair))]) {
    const mine = summary.unserved.filter((u) => u.pair === pair);
    const ports = [...new Set(mine.map((u) => u.port))].join(', ');
    out.push(`n/a: the ${PAIR_TITLES[pair]} serves no ${ports} port, so ${mine.length} scenario(s) were not run through it (${mine.map((u) => u.scenario).join(', ')}).`);
  }
  out.push('');
  out.push('Scenarios:');
  for (const id of run.options.scenarios) out.push(`  ${id}: ${scenarioById(id)?.title ?? id}`);
  out.push('');
  out.push('Targets (marked, not enforced):');
  out.push(
    renderTable(
      ['mark', 'target', 'scenario', 'Trellis', 'HAProxy pair'],
      summary.targets.map((t) => [t.mark === 'met' ? 'met' : t.mark, t.target, t.scenario ?? '(whole run)', t.trellis, t.reference]),
      new Set(),
    ),
  );
  const missed = summary.targets.filter((t) => t.mark === 'MISSED').length;
  const met = summary.targets.filter((t) => t.mark === 'met').length;
  const unservedNote = summary.unserved.length === 0 ? '' : `; ${summary.unserved.length} table cell(s) not applicable (pair without that port kind)`;
  out.push(`${met} met, ${missed} missed, ${summary.targets.length - met - missed} not applicable${unservedNote}`);
  out.push('');
  out.push(...machineLines(run));
  return out.join('\n');
}

/** The machine, the tools, the pairs, and what makes figures suspect. */
function machineLines(run: BenchRun): string[] {
  const out: string[] = [];
  const m = run.machine;
  out.push(`Machine: ${m.cpuCount} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}`);
  out.push(`Tools: ${Object.values(m.tools).join('; ')}`);
  out.push(`Load average (1/5/15 min): ${m.loadAverageBefore.join(' ')} at start, ${(m.loadAverageAfter ?? []).join(' ')} at end`);
  for (const p of run.pairs) out.push(`${PAIR_TITLES[p.name]}: ${p.description}`);
  const split = run.finalSidecars.filter((f) => f.rssAnonBytes !== undefined && f.rssFileBytes !== undefined);
  if (split.length > 0) {
    const mib = (b: number | undefined): string => ((b ?? 0) / 1024 / 1024).toFixed(1);
    const parts = split.map((f) => `${PAIR_TITLES[f.pair]} ${f.role} ${mib(f.rssAnonBytes)} + ${mib(f.rssFileBytes)}`);
    out.push(`RSS after the run, anonymous + file-backed MiB: ${parts.join('; ')}`);
  }
  const warned = run.samples.filter((s) => s.warnings.length > 0);
  for (const s of warned) out.push(`WARNING round ${s.round} ${s.scenario} ${PAIR_TITLES[s.pair]}: ${s.warnings.join('; ')}`);
  const unreset = run.samples.some((s) => s.sidecars.some((c) => !c.peakReset));
  if (unreset) out.push('Note: the kernel refused to reset VmHWM; peak RSS is the peak since each sidecar started.');
  return out;
}

/** The result table's rows, in run order. */
function resultRows(run: BenchRun, summary: BenchSummary, columns: number): string[][] {
  const rows: string[][] = [];
  let previous = '';
  // Rows in run order: every scenario, every pair; a pair that serves no port of the scenario's kind gets
  // an "n/a" row rather than a missing one.
  type Row = { readonly kind: 'cell'; readonly cell: CellSummary } | { readonly kind: 'n/a'; readonly scenario: string; readonly pair: PairName };
  const ordered: Row[] = [];
  for (const scenario of run.options.scenarios) {
    for (const { name } of run.pairs) {
      const cell = summary.cells.find((c) => c.scenario === scenario && c.pair === name);
      if (cell !== undefined) ordered.push({ kind: 'cell', cell });
      else if (summary.unserved.some((u) => u.scenario === scenario && u.pair === name)) ordered.push({ kind: 'n/a', scenario, pair: name });
    }
  }
  for (const row of ordered) {
    if (row.kind === 'n/a') {
      rows.push([row.scenario === previous ? '' : row.scenario, PAIR_TITLES[row.pair], ...Array.from({ length: columns - 2 }, () => 'n/a')]);
      previous = row.scenario;
      continue;
    }
    const cell = row.cell;
    rows.push([
      cell.scenario === previous ? '' : cell.scenario,
      PAIR_TITLES[cell.pair],
      cell.requestsPerSecond.toFixed(0),
      cell.mebibytesPerSecond.toFixed(1),
      ms(cell.p50Us),
      ms(cell.p99Us),
      ms(cell.p999Us),
      signedMs(cell.addedP99Us),
      String(cell.errors),
      String(cell.non2xx),
      perSidecar(cell, (s) => (s.peakRssBytes / MIB).toFixed(1)),
      perSidecar(cell, (s) => s.cpuSeconds.toFixed(2)),
      perSidecar(cell, (s) => (Number.isFinite(s.cpuMicrosPerRequest) ? s.cpuMicrosPerRequest.toFixed(0) : '—')),
    ]);
    previous = cell.scenario;
  }
  return rows;
}
