// Client password checks must not grow the process: node:crypto's scrypt did, by 60+ MB after a
// few dozen logins (glibc kept every 16 MiB block in a pool thread's malloc arena), unless
// GLIBC_TUNABLES was set from outside (docs/performance.md). Run in a fresh process of the build,
// without GLIBC_TUNABLES, as `serve` runs for a user.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DIST } from '../helpers/procs.js';

const run = promisify(execFile);

const script = `
const { hashPassword, verifyPassword } = await import(${JSON.stringify(path.join(DIST, 'accounts/password.js'))});
const rss = () => process.memoryUsage().rss;
const hash = await hashPassword('first login');
const afterFirst = rss();
await Promise.all(Array.from({ length: 24 }, (_, i) => verifyPassword('attempt ' + i, hash)));
process.stdout.write(JSON.stringify({ afterFirst, after: rss() }));
`;

describe('client password checks', () => {
  it('do not grow the resident memory after the first one', { timeout: 60_000 }, async () => {
    const env = { ...process.env };
    delete env.GLIBC_TUNABLES;
    delete env.MALLOC_ARENA_MAX;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { env });
    const { afterFirst, after } = JSON.parse(stdout) as { afterFirst: number; after: number };
    const grewMb = (after - afterFirst) / 1024 / 1024;
    // node:crypto's scrypt: +60 MB and more here; the bound leaves room for the JIT and the heap
    expect(grewMb).toBeLessThan(20);
  });
});
