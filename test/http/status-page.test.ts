// The status page in a real browser (Debian's chromium via playwright-core): the mailboxes are
// shown and the chart moves as live stats arrive.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer, type RunningHttpServer } from '../../src/http/server.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { silentLogger } from '../../src/shared/log.js';
import { CHROMIUM, requireChromium, useBrowser } from '../helpers/browser.js';
import { fakeBackend, type FakeBackend } from './fake-backend.js';

const TOKEN = 'status-page-token-abcdef';
const haveChromium = requireChromium('status page browser test');

describe.skipIf(!haveChromium)(`status page in chromium (skipped when ${CHROMIUM} is missing)`, () => {
  let server: RunningHttpServer;
  let backend: FakeBackend;
  const browser = useBrowser();
  let feeder: NodeJS.Timeout;

  beforeAll(async () => {
    backend = await fakeBackend([
      {
        email: 'alice@example.com',
        provider: 'google',
        state: 'ok',
        tokenExpiresAt: new Date(Date.now() + 3.6e6).toISOString(),
        pool: { idle: 2, busy: 1, connecting: 0, waiting: 0 },
      },
      {
        email: 'bob@example.net',
        provider: 'microsoft',
        state: 'needs_reauth',
        lastError: 'invalid_grant: <b>revoked</b>',
      },
      {
        // at its connection limit with messages waiting: still ok, the pool counts show it
        email: 'carol@example.org',
        provider: 'google',
        state: 'ok',
        pool: { idle: 0, busy: 3, connecting: 0, waiting: 4 },
      },
    ]);
    // live stats fed by a timer: a varying rate and latency so every second differs
    let n = 0;
    feeder = setInterval(() => {
      n++;
      for (let i = 0; i < 1 + (n % 7); i++)
        backend.stats.record(5 + ((n * 37) % 400), i % 5 === 0 ? 'deferred' : 'delivered');
    }, 100);
    server = await startHttpServer({
      listen: { host: '127.0.0.1', port: 0 },
      adminToken: TOKEN,
      metrics: new Metrics({ defaultMetrics: false }),
      backend,
      log: silentLogger,
    });
  });

  afterAll(async () => {
    clearInterval(feeder);
    await server?.close();
    await backend?.cleanup();
  });

  it('shows the 3 mailboxes, hides the token from the URL, and the chart changes over 3 s', async () => {
    const page = await browser().newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`http://127.0.0.1:${server.address.port}/?token=${TOKEN}`);

    const rows = page.locator('#accounts tbody tr');
    await expect.poll(() => rows.count()).toBe(3);
    const emails = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-email')));
    expect(emails).toEqual(['alice@example.com', 'bob@example.net', 'carol@example.org']);
    const bob = await page.locator('tr[data-email="bob@example.net"]').innerText();
    expect(bob).toContain('needs re-authorization');
    expect(bob).toContain('invalid_grant: <b>revoked</b>'); // shown as text, not markup
    expect(await page.locator('#accounts b').count()).toBe(0);
    expect(await page.locator('tr[data-email="carol@example.org"]').innerText()).toMatch(
      /\tok\s.*\s0\s+3\s+4\s/s,
    );

    // the token is gone from the address bar but the page keeps polling with it
    expect(page.url()).not.toContain('token');

    // wait for the first refresh from /admin/live, then sample the chart twice, 3 s apart
    await expect.poll(() => page.locator('#updated').innerText(), { timeout: 10_000 }).not.toBe('');
    const sample = async () => ({
      throughput: (await page.locator('#throughput').getAttribute('points')) ?? '',
      latency: (await page.locator('#latency').getAttribute('points')) ?? '',
      summary: await page.locator('#summary').innerText(),
      problem: await page.locator('#problem').innerText(),
    });
    const first = await sample();
    await page.waitForTimeout(3000);
    const second = await sample();
    expect(first.throughput.split(' ')).toHaveLength(300);
    expect(second.throughput).not.toBe(first.throughput);
    expect(second.latency).not.toBe(first.latency);
    expect(second.summary).toMatch(/msg\/s/);
    expect(second.problem).toBe(''); // the fetches were authorized
    expect(errors).toEqual([]);

    // a table change in the backend shows up without reloading the page
    backend.views = backend.views.slice(0, 2);
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(2);
    await page.close();
  });

  it('without the token the page asks for it', async () => {
    const page = await browser().newPage();
    const res = await page.goto(`http://127.0.0.1:${server.address.port}/`);
    expect(res?.status()).toBe(401);
    expect(await page.locator('input[name=token]').count()).toBe(1);
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('#accounts tbody tr').count()).toBeGreaterThan(0);
    await page.close();
  });
});
