// The batching rate gate against an exact in-memory shared window (the role Redis or the primary
// plays): it spends permits without asking per message, gives unspent ones back, refuses without a
// round trip once the window is full, and falls back to the instance's share when unreachable.
import { describe, expect, it } from 'vitest';
import { BatchedRateGate, type QuotaGrant, type QuotaSource } from '../../src/coordination/batched-rate.js';
import { sleep } from '../helpers/wait.js';

class MemoryWindow implements QuotaSource {
  reachable = true;
  calls = 0;
  private grants = new Map<string, { at: number; n: number }>();
  private seq = 0;
  constructor(private readonly now: () => number) {}
  used(): number {
    let n = 0;
    for (const [id, g] of this.grants) {
      if (this.now() - g.at >= 60_000 + 1000) this.grants.delete(id);
      else n += g.n;
    }
    return n;
  }
  async grant(_m: string, limit: number, want: number): Promise<QuotaGrant> {
    this.calls++;
    if (!this.reachable) throw new Error('unreachable');
    const granted = Math.max(0, Math.min(want, limit - this.used()));
    const grantId = `g${++this.seq}`;
    if (granted > 0) this.grants.set(grantId, { at: this.now(), n: granted });
    return { granted, grantId, retryAfterMs: 5_000 };
  }
  giveBack(_m: string, grantId: string, unused: number): void {
    const g = this.grants.get(grantId);
    if (g) g.n -= Math.min(unused, g.n);
  }
}

async function take(g: BatchedRateGate): Promise<boolean> {
  return await g.take();
}

describe('BatchedRateGate', () => {
  it('answers most messages synchronously once traffic is steady, and gives back what it did not spend', async () => {
    const now = () => performance.now();
    const src = new MemoryWindow(now);
    const gate = new BatchedRateGate('m', 1000, src, { share: 500, validityMs: 200, maxBatch: 32, now });
    let sync = 0;
    for (let i = 0; i < 300; i++) {
      const r = gate.take();
      if (r === true) sync++;
      else expect(await r).toBe(true);
    }
    expect(sync).toBeGreaterThan(250);
    expect(src.calls).toBeLessThan(40);
    expect(src.used()).toBeGreaterThanOrEqual(300);
    await sleep(300); // the last batch lapses unspent
    expect(src.used()).toBe(300);
    expect(gate.held()).toBe(0);
  });

  it('refuses without asking again while the shared window is full', async () => {
    const now = () => performance.now();
    const src = new MemoryWindow(now);
    const gate = new BatchedRateGate('m', 3, src, { share: 1, validityMs: 1000, maxBatch: 8, now });
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await take(gate));
    expect(answers).toEqual([true, true, true]);
    expect(await take(gate)).toBe(false);
    const calls = src.calls;
    for (let i = 0; i < 100; i++) expect(gate.take()).toBe(false);
    expect(src.calls).toBe(calls);
  });

  it('falls back to its local share, counting the messages of the last minute, while the window is unreachable', async () => {
    const now = () => performance.now();
    const src = new MemoryWindow(now);
    const gate = new BatchedRateGate('m', 10, src, { share: 4, validityMs: 30, maxBatch: 8, now });
    expect(await take(gate)).toBe(true);
    expect(await take(gate)).toBe(true); // two messages sent while reachable
    await sleep(80); // what it held lapsed
    expect(gate.held()).toBe(0);
    src.reachable = false;
    const answers: boolean[] = [];
    for (let i = 0; i < 10; i++) answers.push(await take(gate));
    // a share of 4 a minute, 2 of them already spent
    expect(answers.filter(Boolean)).toHaveLength(2);
    expect(src.calls).toBeLessThanOrEqual(3); // no asking while unreachable
  });
});
