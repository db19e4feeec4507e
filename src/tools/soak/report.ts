// The soak's Markdown summary: settings, totals, trend verdicts, faults, and the samples thinned
// to about `maxRows` rows.
import { describeUpstream } from '../harness/env.js';
import type { SoakResult } from './run.js';

const MiB = 1024 * 1024;
const mib = (b: number | null) => (b === null ? 'n/a' : (b / MiB).toFixed(1));
const num = (n: number | null) => (n === null ? 'n/a' : String(n));

function trendValue(unit: string, v: number | null): string {
  if (v === null || Number.isNaN(v)) return 'n/a';
  return unit === 'bytes' ? `${(v / MiB).toFixed(2)} MiB` : `${v.toFixed(2)} ${unit}`;
}

export function renderSoakMarkdown(r: SoakResult, command: string, maxRows = 13): string {
  const o = r.options;
  const out: string[] = [];
  out.push(`Command: \`${command}\``);
  out.push('');
  out.push(
    `${r.startedAt}: ${o.minutes} min at ${o.rate} msg/s, ${o.mailboxes} mailboxes, ${o.connections} client ` +
      `connections, ${describeUpstream(o.style, o.upstreamTls)}, ${o.size} B messages, token lifetime ${o.tokenLifetimeSec} s, a fault every ~${o.faultEverySec} s ` +
      `(seed ${o.seed}), samples every ${o.sampleSec} s. Verdict: **${r.ok ? 'pass' : 'FAIL'}**` +
      (r.failures.length ? ` (${r.failures.join('; ')})` : '') +
      '.',
  );
  out.push('');
  const t = r.totals;
  out.push('| sent | 250 | 4xx | 5xx | no reply | unsent | ids checked | lost | not-ready samples |');
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  out.push(
    `| ${t.sent} | ${t.accepted} | ${t.deferred} | ${t.rejected} | ${t.error} | ${t.unsent} | ${r.checkedIds} | ${r.lost} | ${r.notReadySamples} |`,
  );
  out.push('');
  out.push('| series | judged samples | median | trend per hour (Theil-Sen) | limit per hour | verdict |');
  out.push('|---|---:|---:|---:|---:|---|');
  for (const v of r.verdicts) {
    out.push(
      `| ${v.series} | ${v.samples} | ${trendValue(v.unit, v.median)} | ${trendValue(v.unit, v.slopePerHour)} | ` +
        `${trendValue(v.unit, v.limitPerHour)} | ${v.verdict}${v.why && v.verdict !== 'ok' ? `: ${v.why}` : ''} |`,
    );
  }
  out.push('');
  const byKind = new Map<string, { n: number; sec: number }>();
  for (const f of r.faults) {
    const k = byKind.get(f.name) ?? { n: 0, sec: 0 };
    k.n++;
    k.sec += f.durationSec;
    byKind.set(f.name, k);
  }
  out.push(
    `Faults injected: ${r.faults.length}` +
      (byKind.size
        ? ` (${[...byKind].map(([k, v]) => `${k} ${v.n}x, ${v.sec.toFixed(0)} s`).join('; ')})`
        : '') +
      '.',
  );
  out.push('');
  const step = Math.max(1, Math.ceil(r.samples.length / maxRows));
  const rows = r.samples.filter((_, i) => i % step === 0 || i === r.samples.length - 1);
  out.push(
    '| t (s) | RSS MiB | heap MiB | fds | event-loop p99 ms | upstream conns | 250 | 4xx | no reply | p50 ms | p99 ms | fault |',
  );
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const s of rows) {
    out.push(
      `| ${s.t.toFixed(0)} | ${mib(s.rssBytes)} | ${mib(s.heapUsedBytes)} | ${num(s.openFds)} | ${num(s.eventLoopP99Ms)} | ` +
        `${num(s.upstreamConnections)} | ${s.accepted} | ${s.deferred} | ${s.errors} | ${s.latencyP50Ms} | ${s.latencyP99Ms} | ${s.fault ?? ''} |`,
    );
  }
  out.push('');
  out.push(
    `(every ${step}${step === 1 ? 'st' : 'th'} sample of ${r.samples.length}; per-window counts are for the ${o.sampleSec} s before the sample)`,
  );
  return out.join('\n') + '\n';
}
