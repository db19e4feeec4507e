// What a rate check costs the message path, in-process and with Redis (src/coordination/README.md,
// "Cost per message"). Not part of the test suite: run it by hand against a build.
//   npx tsc -p tsconfig.json --outDir dist-x && node test/coordination/measure-rate-cost.mjs dist-x redis://127.0.0.1:6379
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

const [dist = 'dist', url] = process.argv.slice(2);
const load = (m) => import(pathToFileURL(path.resolve(dist, m)).href);
const { InProcessHub } = await load('coordination/in-process.js');
const { RedisCoordinator } = await load('coordination/redis.js');
const { BatchedRateGate } = await load('coordination/batched-rate.js');
const { silentLogger } = await load('shared/log.js');

const noStore = new Proxy({}, { get: () => () => undefined });

const N = 2_000_000;
/** ns per call of a loop of N calls, best of 5 (each loop is its own function: no shared call site) */
function best(loop) {
  let min = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    loop();
    min = Math.min(min, ((performance.now() - t0) * 1e6) / N);
  }
  return min.toFixed(1);
}

const hub = new InProcessHub({ store: noStore, log: silentLogger });
const member = hub.member();
const open = member.rateGate('open@example.test', 1_000_000_000);
const full = member.rateGate('full@example.test', 1);
console.log(
  `the clock alone (Date.now):      ${best(() => {
    for (let i = 0; i < N; i++) Date.now();
  })} ns`,
);
full.take();
console.log(
  `in-process take (allowed):      ${best(() => {
    for (let i = 0; i < N; i++) open.take();
  })} ns`,
);
console.log(
  `in-process take (over limit):   ${best(() => {
    for (let i = 0; i < N; i++) full.take();
  })} ns`,
);
await member.close();

// the Redis gate's synchronous path alone: permits in hand (a source that grants at once)
const instant = {
  reachable: true,
  grant: async (_m, _l, want) => ({ granted: want, grantId: 'g', retryAfterMs: 0 }),
  giveBack: () => undefined,
};
const batched = new BatchedRateGate('m', 1e12, instant, {
  share: 1,
  validityMs: 3_600_000,
  maxBatch: 1e9,
  now: () => performance.now(),
});
for (let i = 0; i < 24; i++) {
  let r;
  while ((r = batched.take()) === true);
  await r;
}
console.log(
  `batched take (permits in hand): ${best(() => {
    for (let i = 0; i < N; i++) batched.take();
  })} ns`,
);
batched.close();

if (url) {
  const c = new RedisCoordinator({
    url,
    secretKey: 'a-measurement-secret-that-is-long-enough',
    instances: 2,
    log: silentLogger,
    keyPrefix: `measure${process.pid}:`,
  });
  await c.start();
  const gate = c.rateGate('redis@example.test', 1_000_000_000);
  const raw = new Redis(url);
  const scriptCalls = async () => {
    let n = 0;
    for (const m of (await raw.info('commandstats')).matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g))
      n += Number(m[1]);
    return n;
  };
  // as fast as the loop can ask: every message that finds no permit in hand waits for a batch
  for (const [label, n, paceEvery] of [
    ['as fast as possible', 200_000, 0],
    ['paced, ~2 per ms', 4_000, 2],
  ]) {
    const waits = [];
    let sync = 0;
    const calls0 = await scriptCalls();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const r = gate.take();
      if (r === true) sync++;
      else {
        const w0 = performance.now();
        await r;
        waits.push(performance.now() - w0);
      }
      if (paceEvery && i % paceEvery === paceEvery - 1) await sleep(1);
    }
    const ms = performance.now() - t0;
    const trips = (await scriptCalls()) - calls0;
    waits.sort((a, b) => a - b);
    const q = (p) => (waits.length ? waits[Math.min(waits.length - 1, Math.floor(p * waits.length))] : 0);
    console.log(
      `redis ${label}: ${n} messages in ${ms.toFixed(0)} ms (pacing included); ` +
        `${trips} script calls (${(trips / n).toFixed(4)} per message); ` +
        `${sync} answered synchronously, ${waits.length} waited for a batch ` +
        `(${((waits.length / n) * 100).toFixed(2)}%, wait p50 ${q(0.5).toFixed(2)} ms, p99 ${q(0.99).toFixed(2)} ms)` +
        '',
    );
  }
  raw.disconnect();
  await c.close();
}
