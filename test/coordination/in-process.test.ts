import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InProcessHub, createInProcessCoordinator } from '../../src/coordination/in-process.js';
import { silentLogger } from '../../src/shared/log.js';
import { openStateStore, type StateStore } from '../../src/state/store.js';
import { LEASE_TTL_MS, coordinatorContract } from './contract.js';

function tempStore(): { store: StateStore; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-coord-'));
  return { dir, store: openStateStore({ dir, secretKey: 'k'.repeat(32), log: silentLogger }) };
}

coordinatorContract('in-process', async () => {
  const { store, dir } = tempStore();
  const hub = new InProcessHub({ store, log: silentLogger, leaseTtlMs: LEASE_TTL_MS });
  const made: { close(): Promise<void> }[] = [];
  return {
    async make() {
      const m = hub.member();
      made.push(m);
      await m.start();
      return m;
    },
    async close() {
      for (const m of made) await m.close();
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('in-process coordinator', () => {
  it('answers the rate check synchronously, and persists tokens in the embedded store across a restart', async () => {
    const { store, dir } = tempStore();
    const c = createInProcessCoordinator({ store, log: silentLogger });
    const gate = c.rateGate('m@example.test', 2);
    expect([gate.take(), gate.take(), gate.take()]).toEqual([true, true, false]);
    await c.putAccessToken('m@example.test', 'access-1', Date.now() + 60_000, 'lineage');
    const lock = (await c.acquireRefreshLock('m@example.test', 1000))!;
    const w = { configured: 'configured-rt', used: 'configured-rt', next: 'rotated', fence: lock.fence };
    expect(await c.rotateRefreshToken('m@example.test', w)).toBe('ok');
    await c.close();
    store.close();

    const again = openStateStore({ dir, secretKey: 'k'.repeat(32), log: silentLogger });
    const c2 = createInProcessCoordinator({ store: again, log: silentLogger });
    expect(await c2.getAccessToken('m@example.test', 'lineage')).toMatchObject({ token: 'access-1' });
    expect(await c2.getRefreshToken('m@example.test', 'configured-rt')).toBe('rotated');
    expect(c2.health()).toEqual({ state: 'ok' });
    await c2.close();
    again.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
