// The bench environment picks the proxy's ports before the proxy binds them; a port taken in
// between (a test running beside it) must not fail the run (the CI flake of 2026-12-02:
// "cannot start: bind EADDRINUSE").
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startBenchEnv, type BenchEnv } from '../../../src/tools/harness/env.js';
import { CLI } from '../../helpers/procs.js';

const held: net.Server[] = [];
let taken = 0;

// The first port handed out is one this test holds; the rest are free, as the real picker gives.
vi.mock('../../../src/tools/harness/ports.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../src/tools/harness/ports.js')>();
  return {
    freePort: async (host = '127.0.0.1') => {
      if (taken > 0) return real.freePort(host);
      const srv = net.createServer();
      await new Promise<void>((resolve) => srv.listen(0, host, resolve));
      held.push(srv);
      taken = (srv.address() as net.AddressInfo).port;
      return taken;
    },
  };
});

let env: BenchEnv | undefined;
afterEach(async () => {
  await env?.close();
  for (const s of held) s.close();
});

describe('the bench environment', () => {
  it(
    'starts the proxy on other ports when one picked for it was taken before it bound',
    { timeout: 60_000 },
    async () => {
      env = await startBenchEnv({
        mailboxes: 1,
        connections: 1,
        tls: false,
        userPrefix: 'u',
        userDomain: 'example.test',
        recipients: 1,
        cli: CLI,
      });
      expect(taken).toBeGreaterThan(0);
      expect(env.proxySmtpPort).not.toBe(taken);
      const r = await fetch(`http://127.0.0.1:${env.proxyHttpPort}/readyz`);
      expect(r.status).toBe(200);
    },
  );
});
