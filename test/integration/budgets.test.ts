// The global in-flight byte budget (smtp.maxInflightBytes): messages past it are deferred with
// `452 4.3.1`, and bytes held by a client that goes away mid-DATA are given back.
import { beforeAll, describe, expect, it } from 'vitest';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { TEST_PASSWORD as PW, simAccount } from '../helpers/sim-accounts.js';
import { loginAndSend } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { RawSmtp, rawInData } from '../tools/sim/helpers.js';
import { metricValue, waitFor } from '../helpers/wait.js';

const ALICE = 'alice@example.com';
const line = 'x'.repeat(98) + '\r\n'; // 100 bytes

const procs = useProcs('all');
let sim: SimProc;
let proxy: ProxyProc;
beforeAll(async () => {
  sim = await procs.sim();
  proxy = await procs.proxy({
    smtp: { maxMessageSize: 10_000, maxInflightBytes: 20_000 },
    providers: { sim: simProvider(sim) },
    accounts: [simAccount(ALICE, { tag: 'b' })],
  });
});

/** A client in the middle of DATA, having sent `bytes` of its message. */
async function midData(bytes: number): Promise<RawSmtp> {
  const c = await rawInData(proxy.smtpPort, ALICE, PW, 'r@example.net');
  c.write(`Subject: held\r\n\r\n${line.repeat(Math.ceil(bytes / line.length))}`);
  return c;
}

const heldBytes = async () =>
  metricValue(await (await proxy.http('/metrics')).text(), 'xoauth2_proxy_inflight_bytes');

async function sendOne(size = 6_000) {
  const body = line.repeat(size / line.length);
  const r = await loginAndSend(proxy.smtpPort, ALICE, PW, { to: 'r@example.net', body });
  return { ...r.reply, id: r.id };
}

describe('in-flight byte budget', () => {
  it('defers a message past the budget with 452 4.3.1; the held message still goes through', async () => {
    const a = await midData(8_000);
    const b = await midData(8_000);
    // once the proxy has read what they sent
    await waitFor('both bodies held', heldBytes, (v) => (v ?? 0) > 16_000);
    const late = await sendOne(6_000);
    expect(late.ok).toBe(false);
    expect(late.response).toMatch(/^452 4\.3\.1 /);
    a.write('\r\n.\r\n');
    expect((await a.read())[0]).toMatch(/^250 /);
    b.write('\r\n.\r\n');
    expect((await b.read())[0]).toMatch(/^250 /);
    a.close();
    b.close();
  });

  it('gives back the bytes of clients that vanish in the middle of DATA', async () => {
    for (let round = 0; round < 3; round++) {
      const held = await Promise.all([midData(9_000), midData(9_000)]);
      await waitFor('both bodies held', heldBytes, (v) => (v ?? 0) > 17_000);
      for (const c of held) c.close();
    }
    expect(await waitFor('inflight_bytes back to 0', heldBytes, (v) => v === 0)).toBe(0);
    // 54,000 bytes were abandoned against a 20,000-byte budget: had they stayed counted, every
    // message from now on would get 452 4.3.1
    let last = { ok: false, response: '', id: '' };
    await waitFor(
      'a message to be accepted',
      async () => (last = await sendOne(6_000)),
      (r) => r.ok,
    ).catch(() => undefined);
    expect(last.response).toMatch(/^250 /);
    expect((await sim.stats()).messageIds).toContain(last.id);
  });
});
