// `serve --workers`: the flag overrides the config (`auto` = the cores), a bad value is refused, and
// a worker that cannot start (its SMTP port is taken) stops the primary with exit 1.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePort } from '../../src/tools/harness/ports.js';
import { CLI, simProvider, type SimProc } from '../helpers/procs.js';
import { simAccount } from '../helpers/sim-accounts.js';
import { useProcs } from '../helpers/use-procs.js';
import { metricValue, waitFor } from '../helpers/wait.js';

async function config(sim: SimProc, extra: Record<string, unknown> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-workers-cli-'));
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const file = path.join(dir, 'xoauth2-proxy.yaml');
  fs.writeFileSync(
    file,
    YAML.stringify({
      smtp: { listen: [`127.0.0.1:${smtpPort}`], hostname: 'proxy.test' },
      http: { listen: `127.0.0.1:${httpPort}` },
      state: { dir: path.join(dir, 'data'), secretKey: 'test-secret-key-0123456789-abcdefghijklmnop' },
      providers: { sim: simProvider(sim) },
      accounts: [simAccount('alice@example.com')],
      ...extra,
    }),
  );
  return { file, smtpPort, httpPort };
}

function serve(args: string[]) {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, exited, output: () => out };
}

describe('serve --workers (the flag)', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  const started: ReturnType<typeof serve>[] = [];
  beforeAll(async () => {
    sim = await procs.sim();
  });
  afterAll(async () => {
    for (const s of started) {
      s.child.kill('SIGKILL');
      await s.exited;
    }
  });

  it('overrides the config; auto is one worker per core', async () => {
    for (const [flag, want] of [
      ['2', 2],
      ['auto', Math.max(1, os.availableParallelism())],
    ] as const) {
      const c = await config(sim, { workers: 1 });
      const s = serve(['-c', c.file, '--workers', flag]);
      started.push(s);
      const text = await waitFor(
        `--workers ${flag}: /metrics with every worker up`,
        async () => {
          try {
            const r = await fetch(`http://127.0.0.1:${c.httpPort}/readyz`);
            if (r.status !== 200) return '';
            return await (await fetch(`http://127.0.0.1:${c.httpPort}/metrics`)).text();
          } catch {
            return '';
          }
        },
        (t) => t !== '',
        30_000,
        100,
      );
      expect(metricValue(text, 'xoauth2_proxy_workers', { state: 'up' })).toBe(want);
      s.child.kill('SIGTERM');
      expect(await s.exited).toBe(0);
    }
  });

  it('refuses a bad count, and stops with exit 1 when a worker cannot listen', async () => {
    const c = await config(sim);
    const bad = serve(['-c', c.file, '--workers', '0']);
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toMatch(/expected a number of workers/);

    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(c.smtpPort, '127.0.0.1', () => r()));
    try {
      const s = serve(['-c', c.file, '--workers', '2']);
      started.push(s);
      expect(await s.exited).toBe(1);
      expect(s.output()).toMatch(/cannot start: .*EADDRINUSE/);
    } finally {
      taken.close();
    }
  });
});
