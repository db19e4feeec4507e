// `npm run chaos -- --quick` end to end in CI: every scenario against the real simulator and proxy
// processes; the suite itself decides pass/fail per scenario (see src/chaos/run.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DIST } from '../../helpers/procs.js';
import { describe, expect, it } from 'vitest';
import { runScript } from '../../helpers/run-script.js';
import type { ChaosReport } from '../../../src/tools/chaos/run.js';
import { SCENARIOS } from '../../../src/tools/chaos/scenarios.js';

const CLI = path.join(DIST, 'tools/chaos/cli.js');

describe('npm run chaos -- --quick', () => {
  it('passes every scenario: no 250 without the upstream, a reply for everything else, recovery, no leaks', async () => {
    const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'xo-chaos-')), 'chaos.json');
    const { code, out } = await runScript(CLI, ['--quick', '--json', json]);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as ChaosReport;
    expect(report.results.map((r) => r.name)).toEqual(SCENARIOS.map((s) => s.name));
    for (const r of report.results) {
      expect(r.failures, `${r.name}\n${out}`).toEqual([]);
      expect(r.counts.messages).toBeGreaterThan(50);
      expect(r.lost).toBe(0);
    }
    // the faults really happened: tempfails where the upstream refused, abandoned DATA, 5xx after removal
    const by = Object.fromEntries(report.results.map((r) => [r.name, r]));
    expect(by['421-bursts']!.counts.deferred + by['421-bursts']!.counts.accepted).toBe(
      by['421-bursts']!.counts.messages,
    );
    expect(by['clients-vanish-mid-data']!.counts.abandoned).toBeGreaterThan(0);
    expect(by['sighup-account-changes']!.counts.rejected).toBeGreaterThan(0);
    expect(code, out).toBe(0);
  }, 240_000);

  it('passes the token and connection faults with a Microsoft-style provider (rotating refresh tokens) over STARTTLS', async () => {
    const only = [
      'drop-every-nth',
      'token-endpoint-down',
      'refresh-tokens-revoked',
      'sighup-account-changes',
    ];
    const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'xo-chaos-')), 'chaos.json');
    const { code, out } = await runScript(CLI, [
      '--quick',
      '--style',
      'microsoft',
      '--upstream-tls',
      '--only',
      only.join(','),
      '--json',
      json,
    ]);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as ChaosReport;
    expect(report.results.map((r) => r.name)).toEqual(only);
    expect(out).toContain('microsoft-style provider, upstream over STARTTLS');
    for (const r of report.results) {
      expect(r.failures, `${r.name}\n${out}`).toEqual([]);
      expect(r.lost).toBe(0);
    }
    expect(code, out).toBe(0);
  }, 180_000);

  it('names an unknown scenario and exits 2', async () => {
    const { code, out: err } = await runScript(CLI, ['--only', 'meteor-strike']);
    expect(code).toBe(2);
    expect(err).toContain('--only: unknown scenario meteor-strike');
    const style = await runScript(CLI, ['--style', 'yahoo']);
    expect(style.code).toBe(2);
    expect(style.out).toContain('--style: expected google or microsoft, got "yahoo"');
  });
});
