// docs/grafana-dashboard.json and docs/operations.md must only name metrics that exist.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics/metrics.js';

const root = path.join(__dirname, '../..');

async function knownNames(): Promise<Set<string>> {
  const m = new Metrics({ perAccount: true });
  const names = new Set<string>();
  for (const metric of await m.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (metric.type === ('histogram' as never)) {
      for (const s of ['_bucket', '_sum', '_count']) names.add(metric.name + s);
    }
  }
  return names;
}

describe('docs name real metrics', () => {
  it('grafana dashboard: valid JSON, every expression uses existing metric names and rate()/histogram_quantile()', async () => {
    const dash = JSON.parse(readFileSync(path.join(root, 'docs/grafana-dashboard.json'), 'utf8'));
    const known = await knownNames();
    const exprs: string[] = dash.panels.flatMap((p: { targets?: { expr: string }[] }) =>
      (p.targets ?? []).map((t) => t.expr),
    );
    expect(exprs.length).toBeGreaterThan(15);
    const used = new Set(exprs.flatMap((e) => e.match(/\b(?:xoauth2_proxy|process|nodejs)_[a-z_]+/g) ?? []));
    for (const name of used) expect(known, `unknown metric ${name}`).toContain(name);
    expect(exprs.some((e) => e.includes('histogram_quantile(0.99'))).toBe(true);
    expect(exprs.some((e) => e.includes('rate(xoauth2_proxy_messages_total'))).toBe(true);
    // the instruments the README lists all have a panel
    for (const n of [
      'messages_total',
      'message_duration_seconds',
      'upstream_connections',
      'token_refresh_total',
      'accounts',
      'pool_wait_seconds',
    ]) {
      expect(
        exprs.some((e) => e.includes(`xoauth2_proxy_${n}`)),
        n,
      ).toBe(true);
    }
  });

  it('operations.md lists only existing metrics', async () => {
    const text = readFileSync(path.join(root, 'docs/operations.md'), 'utf8');
    const known = await knownNames();
    const used = new Set(text.match(/\bxoauth2_proxy_[a-z_]+/g) ?? []);
    expect(used.size).toBeGreaterThan(10);
    for (const name of used) expect(known, `unknown metric ${name}`).toContain(name);
  });
});
