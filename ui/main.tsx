/**
 * The Trellis web UI: one page, served by the control plane's admin port under /ui/ and bundled at build
 * time (esbuild, Preact); it reads only /ui/api/* of the same origin and fetches nothing else. Tabs follow
 * the WAI-ARIA pattern (arrow keys move between them) and the selected one is in the URL's hash.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { TargetedKeyboardEvent } from 'preact';
import { Graph } from './graph.js';
import { Policy } from './policy.js';
import { Agents, Denials, Services, Zones } from './views.js';
import { usePolled } from './data.js';

const TABS = [
  ['zones', 'Zones', Zones],
  ['services', 'Services', Services],
  ['graph', 'Graph', Graph],
  ['policy', 'Policy', Policy],
  ['denials', 'Denials', Denials],
  ['agents', 'Agents', Agents],
] as const;

type TabId = (typeof TABS)[number][0];
/** What a global control plane's admin serves: its zones and the graph merged from them. */
const GLOBAL_TABS: readonly TabId[] = ['zones', 'graph'];

function fromHash(): TabId {
  const id = location.hash.slice(1);
  return (TABS.find((t) => t[0] === id)?.[0] ?? 'zones') as TabId;
}

function App() {
  const mode = usePolled<{ mode: string }>('overview', 30_000).data?.mode;
  const tabs = mode === 'global' ? TABS.filter((t) => GLOBAL_TABS.includes(t[0])) : TABS;
  const [tab, setTab] = useState<TabId>(fromHash());
  useEffect(() => {
    const onHash = (): void => setTab(fromHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  const select = (id: TabId): void => {
    location.hash = id;
    setTab(id);
  };
  const onKey = (event: TargetedKeyboardEvent<HTMLElement>): void => {
    const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
    if (step === 0) return;
    const i = (tabs.findIndex((t) => t[0] === tab) + step + tabs.length) % tabs.length;
    const next = tabs[i]?.[0] as TabId;
    select(next);
    document.getElementById(`tab-${next}`)?.focus();
  };
  const View = tabs.find((t) => t[0] === tab)?.[2] ?? Zones;
  return (
    <>
      <header>
        <h1>Trellis</h1>
        <nav role="tablist" aria-label="views" onKeyDown={onKey}>
          {tabs.map(([id, title]) => (
            <button key={id} id={`tab-${id}`} role="tab" aria-selected={tab === id} aria-controls="view" tabIndex={tab === id ? 0 : -1} onClick={() => select(id)}>{title}</button>
          ))}
        </nav>
      </header>
      <div id="view" role="tabpanel" aria-labelledby={`tab-${tab}`}><View /></div>
    </>
  );
}

render(<App />, document.getElementById('app') as HTMLElement);
