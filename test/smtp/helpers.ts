// SmtpListeners on a real loopback socket, with a real Relay in front of a fake Deliverer: the
// harness of the client-side tests (listener.test.ts, session.test.ts).
import { afterEach, expect } from 'vitest';
import { AccountRegistry } from '../../src/accounts/registry.js';
import { silentLogger } from '../../src/shared/log.js';
import type { AuthThrottle } from '../../src/smtp/auth-throttle.js';
import { SmtpListeners } from '../../src/smtp/listener.js';
import { TrustedNetworks } from '../../src/smtp/trusted-networks.js';
import { RawSmtp } from '../tools/sim/helpers.js';
import { ALICE, PASSWORD, testConfig, testRelay } from '../relay/helpers.js';

export const plain = (user: string, pw: string) => Buffer.from(`\0${user}\0${pw}`).toString('base64');

export interface StartOptions {
  /** smtp.tls: certificate and key files */
  tls?: { cert: string; key: string };
  throttle?: AuthThrottle;
  maxInflightBytes?: number;
}

/** `start(smtp, options)`, whose listeners are drained after each test of the file calling this. */
export function useSmtpListeners() {
  const open: SmtpListeners[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((l) => l.drain()));
  });
  return async function start(smtp: Record<string, unknown> = {}, opts: StartOptions = {}) {
    const config = await testConfig({
      smtp: { ...(opts.tls ? { tls: opts.tls } : {}), ...smtp },
      shutdownTimeout: '2s',
    });
    const ctx = { config, registry: new AccountRegistry(config), trusted: new TrustedNetworks([]) };
    const { relay, deliverer, metrics } = testRelay({ maxInflightBytes: opts.maxInflightBytes });
    const listeners = new SmtpListeners({
      context: () => ctx,
      relay,
      metrics,
      log: silentLogger,
      throttle: opts.throttle,
    });
    await listeners.listen();
    open.push(listeners);
    const port = listeners.addresses.find((a) => !a.tls)?.address.port ?? 0;
    const tlsPort = listeners.addresses.find((a) => a.tls)?.address.port ?? 0;
    const raw = () => RawSmtp.connect({ host: '127.0.0.1', port });
    const connect = async () => {
      const c = await raw();
      expect(await c.read()).toEqual([`220 ${config.smtp.hostname} ESMTP xoauth2-proxy ESMTP ready`]);
      return c;
    };
    /** connected, EHLO and AUTH PLAIN as ALICE done */
    const authed = async () => {
      const c = await connect();
      expect((await c.cmd('EHLO client.test')).at(-1)).toMatch(/^250 /);
      expect(await c.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
        '235 2.7.0 Authentication successful',
      ]);
      return c;
    };
    return { listeners, relay, deliverer, metrics, port, tlsPort, raw, connect, authed };
  };
}
