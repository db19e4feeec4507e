// A worker process for test/coordination/ipc.test.ts (and the cost figures in
// src/coordination/README.md): an IpcCoordinator over this process's IPC channel to the parent,
// which hosts the hub. The parent drives it with { t: 'do', id, op, ... } and gets { t: 'done', id, v }.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const dist = process.argv[2] ?? 'dist';
const load = (m) => import(pathToFileURL(path.resolve(dist, m)).href);
const { IpcCoordinator } = await load('coordination/ipc.js');
const { peerChannel } = await load('coordination/ipc-channel.js');
const { silentLogger } = await load('shared/log.js');

const c = new IpcCoordinator({
  channel: peerChannel(process),
  log: silentLogger,
  instances: 2,
  instanceId: process.argv[3],
  rateValidityMs: Number(process.argv[4] ?? 1000),
});
await c.start();
const leases = [];
const lost = [];

const ops = {
  async lease({ mailbox, max, n }) {
    const got = await Promise.all(
      Array.from({ length: n }, () => c.acquireLease(mailbox, max, (l) => lost.push(l.id))),
    );
    const held = got.filter(Boolean);
    leases.push(...held);
    return held.length;
  },
  async release({ n }) {
    for (const l of leases.splice(0, n)) l.release();
    return leases.length;
  },
  async take({ mailbox, limit, n }) {
    const gate = c.rateGate(mailbox, limit);
    let ok = 0;
    for (let i = 0; i < n; i++) if (await gate.take()) ok++;
    return ok;
  },
  async announce() {
    c.announceAccountsChanged();
  },
  async heard() {
    return heard;
  },
  // the cost figures: a lease round trip; take() as fast as the loop can ask, and paced
  async measure({ rounds }) {
    const rtt = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      const l = await c.acquireLease('measure@example.test', 1_000_000);
      rtt.push(performance.now() - t0);
      l.release();
    }
    rtt.sort((a, b) => a - b);
    let grants = 0;
    const grant = c.grant.bind(c);
    c.grant = (...args) => (grants++, grant(...args));
    // (a huge limit would size the fallback share's ring: 8 bytes a permit)
    const gate = c.rateGate('fast@example.test', 10_000_000);
    const N = 200_000;
    let sync = 0;
    let best = Infinity;
    const waits = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      let waitMs = 0;
      for (let i = 0; i < N; i++) {
        const x = gate.take();
        if (x === true) sync++;
        else {
          const w0 = performance.now();
          await x;
          const w = performance.now() - w0;
          waitMs += w;
          waits.push(w);
        }
      }
      // the waits for a batch are the round trips, counted apart; what is left is the message path
      best = Math.min(best, ((performance.now() - t0 - waitMs) * 1e6) / N);
    }
    const fast = {
      takeNs: best,
      syncShare: sync / (3 * N),
      grantsPerMessage: grants / (3 * N),
      waitMs: waits.reduce((a, b) => a + b, 0) / Math.max(1, waits.length),
    };
    // steady traffic, about 2 messages per ms
    const paced = c.rateGate('paced@example.test', 10_000_000);
    grants = 0;
    sync = 0;
    const M = 4000;
    for (let i = 0; i < M; i++) {
      const x = paced.take();
      if (x === true) sync++;
      else await x;
      if (i % 2 === 1) await sleep(1);
    }
    return {
      leaseRttMs: { p50: rtt[Math.floor(rounds / 2)], p99: rtt[Math.floor(rounds * 0.99)] },
      fast,
      paced: { syncShare: sync / M, grantsPerMessage: grants / M },
    };
  },
};

const heard = [];
c.onAccountsChanged(() => heard.push('changed'));

process.on('message', async (m) => {
  if (m?.t !== 'do') return;
  try {
    const v = await ops[m.op](m);
    process.send({ t: 'done', id: m.id, v });
  } catch (err) {
    process.send({ t: 'done', id: m.id, err: String(err) });
  }
});
process.send({ t: 'up' });
