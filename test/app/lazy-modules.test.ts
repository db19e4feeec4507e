// What `serve` loads: the modules of features a config does not use stay out of its heap
// (docs/performance.md, memory). Checked in a fresh process on the build.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const DIST = path.resolve(process.env.XO_DIST ?? 'dist');

function loadedAfterImporting(modules: string[]): string[] {
  const script = `
    const { createRequire } = await import('node:module');
    for (const m of ${JSON.stringify(modules)}) await import(m);
    const cache = createRequire(import.meta.url).cache;
    console.log(JSON.stringify(Object.keys(cache)));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as string[];
}

describe('serve loads only what it runs', () => {
  it('does not load ioredis while state.redis is unset', () => {
    const loaded = loadedAfterImporting([
      path.join(DIST, 'commands/serve.js'),
      path.join(DIST, 'app/proxy.js'),
      path.join(DIST, 'app/coordinator.js'),
    ]);
    expect(loaded.some((f) => f.includes(`${path.sep}node_modules${path.sep}ioredis${path.sep}`))).toBe(
      false,
    );
    // control: the check does see a CommonJS dependency that serve does load
    expect(loaded.some((f) => f.includes(`${path.sep}node_modules${path.sep}prom-client${path.sep}`))).toBe(
      true,
    );
  });
});
