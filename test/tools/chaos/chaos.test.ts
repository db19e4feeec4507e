// `npm run chaos -- --quick` end to end in CI: every scenario against the real simulator and proxy
// processes; the suite itself decides pass/fail per scenario (see src/tools/chaos/run.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DIST } from '../../helpers/procs.js';
import { describe, expect, it } from 'vitest';
import { runScript } from '../../helpers/run-script.js';
import type { ChaosReport } from '../../../src/tools/chaos/run.js';
import { SCENARIOS } from '../../../src/tools/chaos/scenarios.js';

const CLI = path.join(DIST, 'tools/chaos/cli.js');

/** Run the suite; its JSON report (or a failure carrying the output, when it wrote none). */
async function chaos(args: string[]): Promise<{ report: ChaosReport; code: number | null; out: string }> {
  const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'xo-chaos-')), 'chaos.json');
  const { code, out } = await runScript(CLI, [...args, '--json', json]);
  if (!fs.existsSync(json)) throw new Error(`chaos wrote no report (exit ${code}):\n${out}`);
  return { report: JSON.parse(fs.readFileSync(json, 'utf8')) as ChaosReport, code, out };
}

/** Every failed check, one line each: the scenario, the check and the values it saw. */
const failedChecks = (report: ChaosReport) =>
  report.results.flatMap((r) => r.failures.map((f) => `${r.name}: ${f}`));

describe('npm run chaos -- --quick', () => {
  it('passes every scenario: no 250 without the upstream, a reply for everything else, recovery, no leaks', async () => {
    const { report, code, out } = await chaos(['--quick']);
    expect(report.results.map((r) => r.name)).toEqual(SCENARIOS.map((s) => s.name));
    expect(failedChecks(report), 'failed checks (scenario: check)').toEqual([]);
    for (const r of report.results) {
      expect(r.counts.messages, `${r.name}: messages sent`).toBeGreaterThan(50);
      expect(r.lost, `${r.name}: messages that got 250 but are not upstream`).toBe(0);
    }
    // the faults really happened: tempfails where the upstream refused, abandoned DATA, 5xx after removal
    const by = Object.fromEntries(report.results.map((r) => [r.name, r]));
    expect(
      by['421-bursts']!.counts.deferred + by['421-bursts']!.counts.accepted,
      '421-bursts: every message 250 or 4xx',
    ).toBe(by['421-bursts']!.counts.messages);
    expect(
      by['clients-vanish-mid-data']!.counts.abandoned,
      'clients-vanish-mid-data: abandoned',
    ).toBeGreaterThan(0);
    expect(
      by['sighup-account-changes']!.counts.rejected,
      'sighup-account-changes: 5xx after removal',
    ).toBeGreaterThan(0);
    expect(code, out).toBe(0);
  }, 240_000);

  it('passes the token and connection faults with a Microsoft-style provider (rotating refresh tokens) over STARTTLS', async () => {
    const only = [
      'drop-every-nth',
      'token-endpoint-down',
      'refresh-tokens-revoked',
      'sighup-account-changes',
    ];
    const { report, code, out } = await chaos([
      '--quick',
      '--style',
      'microsoft',
      '--upstream-tls',
      '--only',
      only.join(','),
    ]);
    expect(report.results.map((r) => r.name)).toEqual(only);
    expect(out).toContain('microsoft-style provider, upstream over STARTTLS');
    expect(failedChecks(report), 'failed checks (scenario: check)').toEqual([]);
    for (const r of report.results)
      expect(r.lost, `${r.name}: messages that got 250 but are not upstream`).toBe(0);
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
