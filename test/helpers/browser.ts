// Debian's chromium driven by playwright-core, for the tests that need a real browser; they skip
// (and say so once) where it is not installed.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';

export const CHROMIUM = '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

/** Warns that `what` is skipped when chromium is missing; true when it is there. */
export function requireChromium(what: string): boolean {
  if (!haveChromium) console.warn(`SKIPPED ${what}: ${CHROMIUM} is missing (apt-get install -y chromium)`);
  return haveChromium;
}

/** Headless, no sandbox (containers), and nothing that reaches outside loopback on its own. */
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * One browser for the enclosing suite: launched in beforeAll (when chromium is there), closed in
 * afterAll. The returned function gives it to a test; it throws where chromium is missing.
 */
export function useBrowser(): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (haveChromium) browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });
  return () => {
    if (!browser) throw new Error(`no browser: ${CHROMIUM} is missing or did not start`);
    return browser;
  };
}
