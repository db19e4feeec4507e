// A hand-written SVG line chart: categorical x axis (offered loads, "max" last), linear y axis from
// 0, one polyline with point markers per series, a legend. No dependencies, deterministic output.

export interface ChartSeries {
  name: string;
  /** one y per x category; null = no measurement (gap) */
  values: (number | null)[];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  /** category labels along x, e.g. ["1k", "5k", ..., "max"] */
  categories: string[];
  series: ChartSeries[];
  width?: number;
  height?: number;
  /** logarithmic y axis (powers of ten); non-positive values are not drawn */
  logY?: boolean;
}

const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
];

export function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!,
  );
}

/** 1, 2, 2.5, 5 x 10^k at or above v */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const fmtTick = (v: number) =>
  v >= 1e6 ? `${+(v / 1e6).toFixed(2)}M` : v >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : `${+v.toPrecision(3)}`;

export function renderLineChart(c: LineChart): string {
  const W = c.width ?? 720;
  const H = c.height ?? 420;
  const left = 70;
  const right = 30;
  const top = 40;
  const bottom = 60;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const all = c.series.flatMap((s) =>
    s.values.filter((v): v is number => v !== null && Number.isFinite(v) && (!c.logY || v > 0)),
  );
  const n = c.categories.length;
  const x = (i: number) => left + (n <= 1 ? pw / 2 : (i * pw) / (n - 1));
  let y: (v: number) => number;
  let ticks: number[];
  if (c.logY) {
    const lo = Math.floor(Math.log10(Math.min(...all, 1)));
    const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...all, 1))));
    y = (v) => top + ph - ((Math.log10(v) - lo) / (hi - lo)) * ph;
    ticks = Array.from({ length: hi - lo + 1 }, (_, k) => 10 ** (lo + k));
  } else {
    const yMax = niceCeil(Math.max(0, ...all) * 1.05);
    y = (v) => top + ph - (v / yMax) * ph;
    ticks = Array.from({ length: 6 }, (_, k) => (yMax * k) / 5);
  }
  const drawable = (v: number | null): v is number => v !== null && Number.isFinite(v) && (!c.logY || v > 0);
  const r = (v: number) => Math.round(v * 10) / 10;
  // legend below the plot, two columns
  const legendTop = H + 5;
  const totalH = H + 10 + Math.ceil(c.series.length / 2) * 20;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${totalH}" viewBox="0 0 ${W} ${totalH}" font-family="sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${W}" height="${totalH}" fill="#ffffff"/>`,
    `<text x="${left + pw / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(c.title)}</text>`,
  );
  // grid + y ticks
  for (const v of ticks) {
    out.push(
      `<line x1="${left}" y1="${r(y(v))}" x2="${left + pw}" y2="${r(y(v))}" stroke="#e0e0e0"/>`,
      `<text x="${left - 6}" y="${r(y(v) + 4)}" text-anchor="end">${escapeXml(fmtTick(v))}</text>`,
    );
  }
  // x ticks
  c.categories.forEach((cat, i) => {
    out.push(
      `<line x1="${r(x(i))}" y1="${top + ph}" x2="${r(x(i))}" y2="${top + ph + 5}" stroke="#333"/>`,
      `<text x="${r(x(i))}" y="${top + ph + 20}" text-anchor="middle">${escapeXml(cat)}</text>`,
    );
  });
  out.push(
    `<line x1="${left}" y1="${top + ph}" x2="${left + pw}" y2="${top + ph}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + ph}" stroke="#333"/>`,
    `<text x="${left + pw / 2}" y="${H - 15}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`,
    `<text x="18" y="${top + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${top + ph / 2})">${escapeXml(c.yLabel)}</text>`,
  );
  c.series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length]!;
    // a polyline per run of consecutive measured points
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1)
        out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${run.join(' ')}"/>`);
      run = [];
    };
    s.values.forEach((v, i) => {
      if (!drawable(v)) return flush();
      run.push(`${r(x(i))},${r(y(v))}`);
    });
    flush();
    s.values.forEach((v, i) => {
      if (!drawable(v)) return;
      out.push(
        `<circle cx="${r(x(i))}" cy="${r(y(v))}" r="3.5" fill="${color}"><title>${escapeXml(`${s.name} @ ${c.categories[i]}: ${v}`)}</title></circle>`,
      );
    });
    const lx = left + (si % 2) * (pw / 2);
    const ly = legendTop + Math.floor(si / 2) * 20;
    out.push(
      `<line x1="${r(lx)}" y1="${ly}" x2="${r(lx + 20)}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${r(lx + 25)}" y="${ly + 4}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
