// `npm run fuzz` in CI: a fixed seed and case count against the real proxy, plus slowloris (command and DATA) and an
// idle-connection flood; any malformed reply, crash, growth, leak or false 250 is a finding.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DIST } from '../../helpers/procs.js';
import { describe, expect, it } from 'vitest';
import { runScript } from '../../helpers/run-script.js';
import type { FuzzReport } from '../../../src/tools/fuzz/run.js';

const CLI = path.join(DIST, 'tools/fuzz/cli.js');

describe('npm run fuzz (fixed seed)', () => {
  it('finds nothing: every reply well-formed, the proxy alive and bounded, slow and idle clients handled', async () => {
    const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'xo-fuzz-')), 'fuzz.json');
    const { code, out } = await runScript(CLI, ['--cases', '400', '--seed', '20261129', '--json', json]);
    const r = JSON.parse(fs.readFileSync(json, 'utf8')) as FuzzReport;
    expect(r.findings, out).toEqual([]);
    expect(code).toBe(0);
    expect(r.cases).toBe(400);
    expect(Object.keys(r.perFamily).length).toBe(10);
    expect(r.replies).toBeGreaterThan(1000);
    expect(r.attacks.slowloris).toMatch(/^cut off after \d+ s \(421 4\.4\.2 /);
    expect(r.attacks['slowloris in DATA']).toMatch(
      /^cut off after \d+ s \(421 4\.4\.2 .*message data too slow/,
    );
    expect(r.attacks['idle flood']).toMatch(
      /^2000 idle connections: 1000 greeted \(220, at most 1000 at once\), 1000 refused \(421\); the proxy closed every idle one itself/,
    );
  }, 120_000);
});
