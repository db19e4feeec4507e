// The soak's code path end to end, short: real simulator + proxy, load, injected faults, samples,
// the loss check, and the exit status.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DIST } from '../../helpers/procs.js';
import { describe, expect, it } from 'vitest';
import { runScript } from '../../helpers/run-script.js';
import type { SoakResult } from '../../../src/tools/soak/run.js';

const CLI = path.join(DIST, 'tools/soak/cli.js');

describe('npm run soak (short)', () => {
  it('drives load through faults, samples the proxy, checks every 250 upstream, and passes', async () => {
    const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'xo-soak-')), 'soak.json');
    const args = ['--minutes', '0.4', '--rate', '80', '--mailboxes', '8', '--connections', '8'];
    // seed 17: a burst of 451s, then the token endpoint unreachable for the rest of the run
    args.push('--sample-sec', '2', '--fault-every-sec', '4', '--segment-sec', '8', '--seed', '17');
    args.push('--token-lifetime-sec', '10', '--json', json);
    const { code, out } = await runScript(CLI, args);
    expect(code, out).toBe(0);
    const r = JSON.parse(fs.readFileSync(json, 'utf8')) as SoakResult;
    expect(r.ok).toBe(true);
    expect(r.lost).toBe(0);
    expect(r.checkedIds).toBe(r.totals.accepted);
    expect(r.totals.accepted).toBeGreaterThan(1000);
    expect(r.faults.map((f) => f.name)).toEqual(['4xx-burst', 'token-unreachable']);
    expect(r.samples.length).toBeGreaterThanOrEqual(10);
    for (const s of r.samples) {
      expect(s.ready).toBe(true);
      expect(s.rssBytes).toBeGreaterThan(0);
      expect(s.openFds).toBeGreaterThan(0);
    }
    expect(out).toContain('Verdict: **pass**');
  }, 90_000);

  it('names the bad option and exits 2', async () => {
    const { code, out: err } = await runScript(CLI, ['--rate', 'fast']);
    expect(code).toBe(2);
    expect(err).toContain('--rate: must be a number >= 1, got "fast"');
  });
});
