// The secure context the pools share: one per CA (a context is ~24 KB of OpenSSL state, one per
// mailbox was 24 MB at 1,000 mailboxes), and sharing never lends one CA's trust to another.
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientContext } from '../../src/upstream/connection.js';
import { lineTlsServer, selfSignedCert } from './helpers.js';

let trusted: { cert: string; key: string };
let stranger: { cert: string; key: string };
const servers: tls.Server[] = [];

beforeAll(async () => {
  [trusted, stranger] = await Promise.all([selfSignedCert(), selfSignedCert()]);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

const server = (pair: { cert: string; key: string }) => lineTlsServer(servers, pair);

/** connect with `ctx` and say whether the server was accepted (else the verification error) */
function verdict(port: number, ctx: tls.SecureContext): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, secureContext: ctx });
    s.on('secureConnect', () => {
      resolve('accepted');
      s.destroy();
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

describe('clientContext', () => {
  it('gives every pool with the same CA the same context', () => {
    expect(clientContext(trusted.cert)).toBe(clientContext(trusted.cert));
    expect(clientContext(undefined)).toBe(clientContext(undefined));
    expect(clientContext(trusted.cert)).not.toBe(clientContext(stranger.cert));
  });

  it('trusts only the CA it was made for, whatever other contexts exist', async () => {
    const [good, bad] = await Promise.all([server(trusted), server(stranger)]);
    const mine = clientContext(trusted.cert);
    clientContext(stranger.cert);
    expect(await verdict(good, mine)).toBe('accepted');
    expect(await verdict(bad, mine)).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(await verdict(bad, clientContext(stranger.cert))).toBe('accepted');
    // Node's root certificates trust neither self-signed server
    expect(await verdict(good, clientContext(undefined))).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('stays correct when the CA keeps changing and contexts are evicted', async () => {
    const good = await server(trusted);
    const others = await Promise.all(Array.from({ length: 20 }, () => selfSignedCert()));
    for (const o of others) clientContext(o.cert);
    // the trusted context was evicted and is made again, still trusting only its CA
    expect(await verdict(good, clientContext(trusted.cert))).toBe('accepted');
    expect(await verdict(good, clientContext(others[0]!.cert))).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });
});
