// Cumulative cost over time (uPlot, canvas) with a marker for every node that was issued a key.
// Zoom: drag a range, mouse wheel, or +/−; pan: ◀ ▶ or the arrow keys; reset: double click or
// "All". Each zoom redraws at once from the data at hand, then fetches the range at full
// resolution (the server downsamples to about the plot's pixel width).

import { useCallback, useEffect, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

import { api, type CostSeries } from './api';
import { clusterAt, clusterLabel, clusterMarkers, placeLabels, type Cluster } from './markers';
import { formatAxisTime, formatTime, formatUsd, formatUsdAdaptive } from './format';
import { ErrorNote } from './ui';

interface Range {
  from: number | null;
  to: number | null;
}

interface Props {
  /** One key, or null for the whole pool. */
  keyId: number | null;
  /** The node's clock (unix seconds): presets count back from it. */
  now: number;
  label: string;
}

const PRESETS: [string, number | null][] = [
  ['24 h', 86400],
  ['7 d', 7 * 86400],
  ['30 d', 30 * 86400],
  ['All', null],
];

const MARKER_GAP_PX = 14;
const LABEL_ROWS = 3;
const HOVER_TOLERANCE_PX = 7;

interface Colors {
  line: string;
  fill: string;
  marker: string;
  text: string;
  grid: string;
}

function readColors(el: Element): Colors {
  const css = getComputedStyle(el);
  const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
  return {
    line: v('--chart-line', '#c15f3c'),
    fill: v('--chart-fill', 'rgba(193,95,60,0.12)'),
    marker: v('--chart-marker', '#3b6fd4'),
    text: v('--text-muted', '#666'),
    grid: v('--grid', 'rgba(128,128,128,0.15)'),
  };
}

/** What the plot shows: x in unix seconds, y in USD (floats for drawing only). */
function toPlotData(series: CostSeries, range: Range, now: number): [number[], number[]] {
  const t = series.t.slice();
  const v = series.v.map((micro) => micro / 1e6);
  const end = Math.min(range.to ?? now, now);
  if (t.length === 0) {
    // No cost yet: show the range, or from an hour before the first join (so its marker is not
    // on the plot's edge), or the last day.
    const firstJoin = series.joins[0]?.t;
    const start = range.from ?? (firstJoin != null ? Math.min(firstJoin, end) - 3600 : end - 86400);
    return [[start, Math.max(end, start + 1)], [0, 0]];
  }
  if (end > t[t.length - 1]) {
    // The cumulative cost stays flat until now: draw it up to now.
    t.push(end);
    v.push(v[v.length - 1]);
  }
  return [t, v];
}

export function CostChart({ keyId, now, label }: Props) {
  const wrapRef = useRef<HTMLDivElement>(null);
  const plotHostRef = useRef<HTMLDivElement>(null);
  const tipRef = useRef<HTMLDivElement>(null);
  const plotRef = useRef<uPlot | null>(null);
  const joinsRef = useRef<{ t: number[]; names: string[] }>({ t: [], names: [] });
  const clustersRef = useRef<Cluster[]>([]);
  const programmaticRef = useRef(false);
  const rangeTimer = useRef<number | undefined>(undefined);
  const colorsRef = useRef<Colors | null>(null);
  const labelsSignature = useRef('');
  const hasDataRef = useRef(false);
  const wholeHistoryRef = useRef(true);
  const markedFirstData = useRef(false);
  const [range, setRangeState] = useState<Range>({ from: null, to: null });
  // The preset the range came from (null: a zoom or pan of the operator's).
  const [preset, setPreset] = useState<string | null>('All');
  const setRange = useCallback((next: Range | ((r: Range) => Range), presetName: string | null = null) => {
    window.clearTimeout(rangeTimer.current); // an explicit choice wins over a zoom still settling
    setRangeState(next);
    setPreset(presetName);
  }, []);
  const [series, setSeries] = useState<CostSeries | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [width, setWidth] = useState(0);
  const [visibleLabels, setVisibleLabels] = useState<{ label: string; px: number; t: number; start: number; end: number }[]>([]);
  // The nodes of a clicked marker cluster, listed in full below the plot.
  const [pinned, setPinned] = useState<{ t: number[]; names: string[] } | null>(null);

  // The plot itself: created once, fed data below.
  useEffect(() => {
    const host = plotHostRef.current;
    const wrap = wrapRef.current;
    if (!host || !wrap) return;
    colorsRef.current = readColors(wrap);
    const colors = () => colorsRef.current ?? readColors(wrap);

    // Draw timing for the benchmark (Performance API marks; no effect otherwise).
    let drawStartedAt = 0;
    const drawStarted = () => {
      drawStartedAt = performance.now();
    };

    const drawMarkers = (u: uPlot) => {
      const { t, names } = joinsRef.current;
      const c = colors();
      const ratio = uPlot.pxRatio;
      const left = u.bbox.left;
      const top = u.bbox.top;
      const bottom = u.bbox.top + u.bbox.height;
      const plotWidth = u.bbox.width / ratio;
      const clusters = clusterMarkers(t, (x) => u.valToPos(x, 'x'), MARKER_GAP_PX, 0, plotWidth);
      clustersRef.current = clusters;
      const ctx = u.ctx;
      ctx.save();
      ctx.beginPath();
      ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
      ctx.clip();
      ctx.strokeStyle = c.marker;
      ctx.fillStyle = c.marker;
      ctx.lineWidth = 1 * ratio;
      // Many markers: fainter lines, so the cost line stays readable.
      ctx.globalAlpha = clusters.length > 30 ? 0.45 : 0.9;
      ctx.setLineDash([3 * ratio, 3 * ratio]);
      ctx.beginPath();
      for (const cl of clusters) {
        const x = Math.round(left + cl.px * ratio) + 0.5;
        ctx.moveTo(x, top);
        ctx.lineTo(x, bottom);
      }
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.setLineDash([]);
      ctx.font = `${11 * ratio}px system-ui, sans-serif`;
      ctx.textBaseline = 'top';
      ctx.textAlign = 'left'; // uPlot leaves the context as its last axis label set it
      const labels = clusters.map((cl) => clusterLabel(names, cl));
      const widths = labels.map((l) => ctx.measureText(l).width / ratio + 6);
      // A label starts right of its line, or ends at its line when it would pass the right edge.
      const starts = clusters.map((cl, i) => (cl.px + 3 + widths[i] <= plotWidth ? cl.px + 3 : Math.max(0, cl.px - 3 - widths[i])));
      const rows = placeLabels(starts, widths, LABEL_ROWS);
      clusters.forEach((cl, i) => {
        const x = left + cl.px * ratio;
        const count = cl.end - cl.start;
        // A dot per cluster, larger for more nodes.
        ctx.beginPath();
        ctx.arc(x, bottom - 4 * ratio, Math.min(4.5, 2.5 + Math.log2(count) / 2) * ratio, 0, Math.PI * 2);
        ctx.fill();
        if (rows[i] < 0) return;
        const y = top + (4 + rows[i] * 15) * ratio;
        ctx.fillText(labels[i], left + starts[i] * ratio, y);
      });
      const shown = clusters.map((cl, i) => ({ label: labels[i], px: cl.px, t: t[cl.start], start: cl.start, end: cl.end }));
      ctx.restore();
      programmaticRef.current = false;
      const drawMs = performance.now() - drawStartedAt;
      if (performance.getEntriesByName('cost-chart-draw').length > 1000) performance.clearMarks('cost-chart-draw');
      performance.mark('cost-chart-draw', { detail: { drawMs } });
      if (hasDataRef.current && !markedFirstData.current) {
        markedFirstData.current = true;
        performance.mark('cost-chart-drawn-with-data', { detail: { drawMs, markers: t.length, points: u.data[0].length } });
      }
      const signature = shown.map((l) => `${l.label}@${Math.round(l.px)}`).join('|');
      if (signature !== labelsSignature.current) {
        labelsSignature.current = signature;
        setVisibleLabels(shown);
      }
    };

    const showTip = (u: uPlot) => {
      const tip = tipRef.current;
      if (!tip) return;
      const left = u.cursor.left ?? -1;
      const idx = u.cursor.idx;
      if (left < 0 || idx == null) {
        tip.hidden = true;
        return;
      }
      const at = u.posToVal(left, 'x');
      const cost = u.data[1][idx];
      const cluster = clusterAt(clustersRef.current, left, HOVER_TOLERANCE_PX);
      const { names, t } = joinsRef.current;
      tip.replaceChildren();
      const line = (text: string, cls?: string) => {
        const div = document.createElement('div');
        div.textContent = text;
        if (cls) div.className = cls;
        tip.appendChild(div);
      };
      line(formatTime(Math.round(at)), 'tip-time');
      if (cost != null) line(`Spent to date ${formatUsd(Math.round(cost * 1e6))}`, 'tip-cost');
      if (cluster) {
        const count = cluster.end - cluster.start;
        line(count === 1 ? '1 node joined' : `${count} nodes joined`, 'tip-head');
        const shown = Math.min(count, 12);
        for (let i = cluster.start; i < cluster.start + shown; i++) line(`${names[i]} · ${formatTime(t[i])}`, 'tip-node');
        if (count > shown) line(`and ${count - shown} more: click to list them all`, 'tip-more');
      }
      tip.hidden = false;
      const box = u.over.getBoundingClientRect();
      const tipWidth = tip.offsetWidth;
      const wanted = left + 14 + tipWidth > box.width ? left - tipWidth - 10 : left + 14;
      const x = Math.max(0, Math.min(wanted, box.width - tipWidth));
      tip.style.transform = `translate(${Math.round(x + u.over.offsetLeft)}px, ${Math.round(u.over.offsetTop + 8)}px)`;
    };

    let lastX = { min: NaN, max: NaN };
    const onScaleChange = (u: uPlot, key: string) => {
      if (key !== 'x') return;
      const { min, max } = u.scales.x;
      if (min == null || max == null) return;
      // A resize re-applies the same scale: only a new range is the operator's zoom or pan.
      const same = Math.abs(min - lastX.min) < 1 && Math.abs(max - lastX.max) < 1;
      lastX = { min, max };
      if (same || programmaticRef.current) return;
      window.clearTimeout(rangeTimer.current);
      const next = { from: Math.floor(min), to: Math.ceil(max) };
      // Same range as shown (e.g. a click without a drag): nothing to fetch.
      rangeTimer.current = window.setTimeout(() => {
        setRangeState((r) => (r.from != null && Math.abs(r.from - next.from) < 2 && Math.abs((r.to ?? 0) - next.to) < 2 ? r : next));
        setPreset(null);
      }, 250);
    };

    const wheelZoom = (u: uPlot) => {
      u.over.addEventListener(
        'wheel',
        (e) => {
          e.preventDefault();
          const { min, max } = u.scales.x;
          if (min == null || max == null) return;
          const rect = u.over.getBoundingClientRect();
          const at = u.posToVal(e.clientX - rect.left, 'x');
          const factor = e.deltaY < 0 ? 0.75 : 1 / 0.75;
          const nextMin = at - (at - min) * factor;
          const nextMax = at + (max - at) * factor;
          if (nextMax - nextMin < 3600) return;
          u.setScale('x', { min: nextMin, max: nextMax });
        },
        { passive: false },
      );
    };

    const opts: uPlot.Options = {
      width: Math.max(320, host.clientWidth),
      height: 320,
      pxAlign: 0,
      legend: { show: false },
      cursor: {
        drag: { x: true, y: false, setScale: true, dist: 5 },
        bind: {
          // Double click resets to the whole history (handled by the component).
          dblclick: () => () => null,
        },
        points: { size: 7 },
        // The line steps after each point: under the pointer is the last point at or before it.
        dataIdx: (u, _series, closest, xValue) => (closest > 0 && u.data[0][closest] > xValue ? closest - 1 : closest),
      },
      scales: {
        x: { time: true },
        y: {
          // From zero over the whole history; zoomed in, from the level cost had reached, so the
          // growth within the range is visible.
          range: (u, min, max) => {
            const zoomed = !wholeHistoryRef.current || (u.scales.x.min ?? -Infinity) > (u.data[0][0] ?? Infinity);
            const lo = zoomed ? min : 0;
            const span = max - lo || Math.max(max, 1);
            return [Math.max(0, lo - (zoomed ? span * 0.05 : 0)), max + span * 0.08];
          },
        },
      },
      axes: [
        {
          stroke: () => colors().text,
          grid: { stroke: () => colors().grid, width: 1 },
          ticks: { stroke: () => colors().grid },
          values: (u, splits, _axis, _space, step) => {
            const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
            return splits.map((s) => formatAxisTime(s, step, span));
          },
          space: 70,
        },
        {
          stroke: () => colors().text,
          grid: { stroke: () => colors().grid, width: 1 },
          ticks: { stroke: () => colors().grid },
          values: (_u, splits) => splits.map((s) => formatUsd(Math.round(s * 1e6), Number.isInteger(s) ? 0 : 2)),
          size: 64,
        },
      ],
      series: [
        {},
        {
          label: 'Spent to date',
          stroke: () => colors().line,
          fill: () => colors().fill,
          width: 2,
          paths: uPlot.paths.stepped!({ align: 1 }),
          points: { show: false },
        },
      ],
      hooks: {
        drawClear: [drawStarted],
        draw: [drawMarkers],
        setCursor: [showTip],
        setScale: [onScaleChange],
        ready: [wheelZoom],
      },
    };
    const plot = new uPlot(opts, [[], []], host);
    plotRef.current = plot;
    const onDblClick = () => setRange({ from: null, to: null }, 'All');
    let downAt = -1;
    const onDown = (e: PointerEvent) => {
      downAt = e.clientX;
    };
    const onClick = (e: MouseEvent) => {
      if (Math.abs(e.clientX - downAt) > 3) return; // the end of a drag-zoom, not a click
      const left = e.clientX - plot.over.getBoundingClientRect().left;
      const cluster = clusterAt(clustersRef.current, left, HOVER_TOLERANCE_PX);
      if (!cluster) return;
      pinRef.current(cluster.start, cluster.end);
    };
    plot.over.addEventListener('pointerdown', onDown);
    plot.over.addEventListener('click', onClick);
    plot.over.addEventListener('dblclick', onDblClick);
    const onLeave = () => {
      if (tipRef.current) tipRef.current.hidden = true;
    };
    plot.over.addEventListener('mouseleave', onLeave);

    const resize = new ResizeObserver(() => {
      const w = Math.max(320, host.clientWidth);
      if (w !== plot.width) plot.setSize({ width: w, height: 320 });
      setWidth(w);
    });
    resize.observe(host);
    const scheme = window.matchMedia('(prefers-color-scheme: dark)');
    const onScheme = () => {
      colorsRef.current = readColors(wrap);
      plot.redraw(false, true);
    };
    scheme.addEventListener('change', onScheme);
    return () => {
      scheme.removeEventListener('change', onScheme);
      resize.disconnect();
      window.clearTimeout(rangeTimer.current);
      plot.destroy();
      plotRef.current = null;
    };
  }, []);

  // Data for the range at about one point per pixel; resizing refetches only per 200 px step.
  const widthBucket = Math.ceil(width / 200) * 200;
  useEffect(() => {
    if (widthBucket === 0) return;
    let cancelled = false;
    setLoading(true);
    api
      .costSeries({ key: keyId, from: range.from, to: range.to, max_points: Math.min(4000, Math.max(200, widthBucket)) })
      .then((s) => {
        if (cancelled) return;
        setSeries(s);
        setError(null);
        joinsRef.current = { t: s.joins.map((j) => j.t), names: s.joins.map((j) => j.node) };
        const plot = plotRef.current;
        if (!plot) return;
        const data = toPlotData(s, range, now);
        // uPlot applies scales in its next commit (a microtask): the flag stays up until the draw
        // that follows, so the scale change this causes is not taken for the operator's zoom.
        programmaticRef.current = true;
        hasDataRef.current = true;
        wholeHistoryRef.current = range.from == null;
        plot.setData(data, range.from == null);
        if (range.from != null && range.to != null) plot.setScale('x', { min: range.from, max: range.to });
      })
      .catch((e) => !cancelled && setError(e))
      .finally(() => !cancelled && setLoading(false));
    return () => {
      cancelled = true;
    };
    // `now` moves every refresh; refetching for it alone is not needed.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [keyId, range.from, range.to, widthBucket]);

  const pin = (start: number, end: number) => {
    const { t, names } = joinsRef.current;
    setPinned({ t: t.slice(start, end), names: names.slice(start, end) });
  };
  const pinRef = useRef(pin);
  pinRef.current = pin;

  const zoomBy = useCallback((factor: number) => {
    const u = plotRef.current;
    const { min, max } = u?.scales.x ?? {};
    if (!u || min == null || max == null) return;
    const mid = (min + max) / 2;
    const half = Math.max(1800, ((max - min) / 2) * factor);
    u.setScale('x', { min: mid - half, max: mid + half });
  }, []);

  const panBy = useCallback((fraction: number) => {
    const u = plotRef.current;
    const { min, max } = u?.scales.x ?? {};
    if (!u || min == null || max == null) return;
    const shift = (max - min) * fraction;
    u.setScale('x', { min: min + shift, max: max + shift });
  }, []);

  const onKey = (e: React.KeyboardEvent) => {
    const actions: Record<string, () => void> = {
      ArrowLeft: () => panBy(-0.25),
      ArrowRight: () => panBy(0.25),
      '+': () => zoomBy(0.5),
      '=': () => zoomBy(0.5),
      '-': () => zoomBy(2),
      '0': () => setRange({ from: null, to: null }, 'All'),
    };
    const action = actions[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  };

  const activePreset = range.from == null ? 'All' : preset;
  const empty = series != null && series.t.length === 0 && series.joins.length === 0;

  return (
    <div className="chart-card" ref={wrapRef}>
      <div className="chart-toolbar" role="toolbar" aria-label={`${label}: time range`}>
        <div className="segmented">
          {PRESETS.map(([name, secs]) => (
            <button
              key={name}
              type="button"
              aria-pressed={activePreset === name}
              onClick={() => setRange(secs == null ? { from: null, to: null } : { from: now - secs, to: now }, name)}
            >
              {name}
            </button>
          ))}
        </div>
        <div className="chart-nav">
          <button type="button" onClick={() => panBy(-0.5)} aria-label="Pan back in time" title="Pan back (←)">◀</button>
          <button type="button" onClick={() => panBy(0.5)} aria-label="Pan forward in time" title="Pan forward (→)">▶</button>
          <button type="button" onClick={() => zoomBy(0.5)} aria-label="Zoom in" title="Zoom in (+)">+</button>
          <button type="button" onClick={() => zoomBy(2)} aria-label="Zoom out" title="Zoom out (−)">−</button>
          <button type="button" onClick={() => setRange({ from: null, to: null }, 'All')} title="Whole history (0 or double click)">Reset</button>
        </div>
        <span className="chart-status" aria-live="polite">
          {loading ? 'Loading…' : series ? `${series.joins_total} node${series.joins_total === 1 ? '' : 's'} joined in view` : ''}
          {series && series.joins_total > series.joins.length ? ` (${series.joins.length} shown)` : ''}
        </span>
      </div>
      <div
        className="chart-area"
        tabIndex={0}
        onKeyDown={onKey}
        role="group"
        aria-roledescription="chart"
        aria-label={`${label}: cumulative cost over time${series ? `, ${formatUsdAdaptive(series.total_micro_usd)} in all` : ''}. Arrow keys pan, plus and minus zoom, 0 resets.`}
        data-testid="cost-chart"
      >
        <div ref={plotHostRef} className="chart-host" />
        <div ref={tipRef} className="chart-tip" role="tooltip" hidden data-testid="chart-tooltip" />
        {empty && !loading && <div className="chart-empty">No cost recorded and no node joined yet.</div>}
      </div>
      {error != null && <ErrorNote error={error} />}
      {pinned && (
        <section className="pinned" aria-label="Nodes of the selected marker" data-testid="pinned-nodes">
          <div className="pinned-head">
            <strong>
              {pinned.names.length === 1 ? '1 node joined' : `${pinned.names.length} nodes joined`} {formatTime(pinned.t[0])}
              {pinned.names.length > 1 && ` – ${formatTime(pinned.t[pinned.t.length - 1])}`}
            </strong>
            <button type="button" className="link" onClick={() => setPinned(null)}>
              Close
            </button>
          </div>
          <ol>
            {pinned.names.map((name, i) => (
              <li key={`${name}-${pinned.t[i]}`}>
                {name} <span className="muted">{formatTime(pinned.t[i])}</span>
              </li>
            ))}
          </ol>
        </section>
      )}
      {visibleLabels.length > 0 && (
        <details className="marker-list">
          <summary>Node joins in view, as marked on the plot ({visibleLabels.length})</summary>
          <ul data-testid="chart-markers">
            {visibleLabels.slice(0, 300).map((l) => (
              <li key={`${l.t}-${l.start}`} data-px={Math.round(l.px)}>
                <button type="button" className="link" onClick={() => pin(l.start, l.end)}>
                  {l.label}
                </button>{' '}
                <span className="muted">{formatTime(l.t)}</span>
              </li>
            ))}
            {visibleLabels.length > 300 && <li className="muted">and {visibleLabels.length - 300} more markers: zoom in to see them</li>}
          </ul>
        </details>
      )}
    </div>
  );
}
