/**
 * Who calls whom, live: services on a circle, one arrow per caller → callee pair with its rate, success rate
 * and p50/p99, denied pairs dashed red; the same numbers in a table beside it (the keyboard's and the
 * screen reader's way in). A circle needs no layout library and stays legible for the tens of services
 * one zone shows.
 */
import { fmtMs, fmtPct, usePolled, type Edge } from './data.js';
import { Problem } from './views.js';

const SIZE = 480;
const RADIUS = 170;

function layout(names: string[]): Map<string, { x: number; y: number }> {
  const at = new Map<string, { x: number; y: number }>();
  names.forEach((n, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, names.length) - Math.PI / 2;
    at.set(n, { x: SIZE / 2 + RADIUS * Math.cos(angle), y: SIZE / 2 + RADIUS * Math.sin(angle) });
  });
  return at;
}

function label(e: Edge): string {
  return `${e.ratePerSecond.toFixed(2)}/s · ${fmtPct(e.successRate)} · p99 ${fmtMs(e.p99Ms)}${e.denied > 0 ? ` · ${e.denied} denied` : ''}`;
}

export function Graph() {
  const { data, error } = usePolled<{ zone: string; edges: Edge[]; windowMs: number }>('edges?minutes=1');
  // The global merges the zones' 5-minute views (control/global/zone-golden.ts); a zone shows its last minute.
  const merged = data?.zone === 'global';
  const edges = data?.edges ?? [];
  const names = [...new Set(edges.flatMap((e) => [e.source, e.destination]))].sort();
  const at = layout(names);
  return (
    <section aria-labelledby="graph-h">
      <h2 id="graph-h">Call graph <span class="muted">{merged ? `(all zones, last ${Math.round((data?.windowMs ?? 0) / 60_000)} min)` : '(last minute)'}</span></h2>
      <Problem error={error} />
      {edges.length === 0 && <p class="muted">{merged ? 'No traffic reported yet: zones send their edge view every 30 s.' : 'No traffic reported yet: agents send a summary every 10 s.'}</p>}
      <svg class="graph" viewBox={`0 0 ${SIZE} ${SIZE}`} role="img" aria-label={`call graph of ${names.length} services`}>
        <defs><marker id="arrow" viewBox="0 0 10 10" refX="18" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#888" /></marker></defs>
        {edges.map((e) => {
          const a = at.get(e.source);
          const b = at.get(e.destination);
          if (a === undefined || b === undefined) return null;
          const denied = e.denied > 0 && e.requests === 0;
          return (
            <g key={`${e.source}>${e.destination}`} data-edge={`${e.source}>${e.destination}`}>
              <title>{`${e.source} → ${e.destination}: ${label(e)}`}</title>
              <line class={`edge${e.denied > 0 ? ' denied' : ''}`} x1={a.x} y1={a.y} x2={b.x} y2={b.y} marker-end="url(#arrow)" />
              <text x={(a.x + b.x) / 2} y={(a.y + b.y) / 2 - 4} text-anchor="middle">{denied ? 'denied' : `${e.ratePerSecond.toFixed(1)}/s ${fmtPct(e.successRate)}`}</text>
            </g>
          );
        })}
        {names.map((n) => {
          const p = at.get(n) as { x: number; y: number };
          return (
            <g key={n} class="node"><circle cx={p.x} cy={p.y} r={9} /><text x={p.x} y={p.y + (p.y > SIZE / 2 ? 24 : -14)} text-anchor="middle">{n}</text></g>
          );
        })}
      </svg>
      <div class="scroll"><table aria-label="edges">
        <thead><tr><th>from</th><th>to</th><th>rate</th><th>success</th><th>p50</th><th>p99</th><th>denied</th></tr></thead>
        <tbody>
          {edges.map((e) => (
            <tr key={`${e.source}>${e.destination}`} class={e.denied > 0 ? 'bad edge-row' : 'edge-row'} data-edge={`${e.source}>${e.destination}`}>
              <td>{e.source}</td><td>{e.destination}</td><td class="rate">{e.ratePerSecond.toFixed(2)}/s</td>
              <td>{fmtPct(e.successRate)}</td><td>{fmtMs(e.p50Ms)}</td><td>{fmtMs(e.p99Ms)}</td><td>{e.denied}</td>
            </tr>
          ))}
        </tbody>
      </table></div>
    </section>
  );
}
