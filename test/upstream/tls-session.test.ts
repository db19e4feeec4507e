// A kept TLS session without the server's certificate: it still resumes, it never stands in for
// verifying a server that does not resume it, and anything not shaped as a session is left alone.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { withoutPeerCertificate } from '../../src/upstream/tls-session.js';
import { lineTlsServer, selfSignedCert } from './helpers.js';

let trusted: { cert: string; key: string };
let stranger: { cert: string; key: string };
const servers: tls.Server[] = [];

beforeAll(async () => {
  [trusted, stranger] = await Promise.all([selfSignedCert(), selfSignedCert()]);
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

const server = (pair: { cert: string; key: string }, maxVersion?: tls.SecureVersion) =>
  lineTlsServer(servers, pair, maxVersion);

interface Outcome {
  resumed?: boolean;
  error?: string;
  /** the last session ticket the server sent */
  session?: Buffer;
}

/** One client connection trusting only `trusted`'s certificate. */
function connect(port: number, session?: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = {};
    const s = tls.connect({ host: '127.0.0.1', port, ca: trusted.cert, session });
    s.on('secureConnect', () => (out.resumed = s.isSessionReused()));
    s.on('session', (t: Buffer) => (out.session = t));
    s.on('data', () => {});
    s.on('error', (e: NodeJS.ErrnoException) => (out.error = e.code ?? e.message));
    s.on('close', () => resolve(out));
  });
}

async function ticketFrom(port: number): Promise<Buffer> {
  const first = await connect(port);
  expect(first.error).toBeUndefined();
  expect(first.session).toBeInstanceOf(Buffer);
  return first.session!;
}

describe('a session kept without the peer certificate', () => {
  it('drops the certificate of a TLS 1.3 session, which still resumes', async () => {
    const port = await server(trusted);
    const full = await ticketFrom(port);
    const certDer = new X509Certificate(trusted.cert).raw;
    expect(full.includes(certDer)).toBe(true);
    const kept = withoutPeerCertificate(full);
    expect(kept.includes(certDer)).toBe(false);
    expect(kept.length).toBeLessThan(full.length - certDer.length + 16);
    const again = await connect(port, kept);
    expect(again).toMatchObject({ resumed: true });
    expect(again.error).toBeUndefined();
  });

  it('keeps the certificate of a TLS 1.2 session, which Node resumes only with it', async () => {
    const port = await server(trusted, 'TLSv1.2');
    const full = await ticketFrom(port);
    expect(withoutPeerCertificate(full)).toBe(full);
    expect(await connect(port, full)).toMatchObject({ resumed: true });
  });

  it('never lets a server that does not resume it skip verification', async () => {
    const kept = withoutPeerCertificate(await ticketFrom(await server(trusted)));
    // same address family, another server: other ticket keys, a certificate we do not trust
    const r = await connect(await server(stranger), kept);
    expect(r.resumed).toBeUndefined();
    expect(r.error).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('falls back to a full, verified handshake when the server cannot resume it', async () => {
    const kept = withoutPeerCertificate(await ticketFrom(await server(trusted)));
    const r = await connect(await server(trusted), kept); // same certificate, other ticket keys
    expect(r.error).toBeUndefined();
    expect(r.resumed).toBe(false);
  });

  it('re-encodes long-form lengths', () => {
    const big = Buffer.alloc(300, 7);
    const der = Buffer.concat([
      Buffer.from([0x30, 0x82, 0x01, 0x43]), // 323 bytes follow
      Buffer.from([0x02, 0x01, 0x01]), // INTEGER 1
      Buffer.from([0x02, 0x02, 0x03, 0x04]), // TLS 1.3
      Buffer.from([0xa3, 0x82, 0x01, 0x00]), // [3], 256 bytes
      big.subarray(0, 256),
      Buffer.from([0x04, 0x81, 0x35]), // OCTET STRING, 53 bytes
      big.subarray(0, 53),
    ]);
    expect(der.length).toBe(4 + 323);
    const out = withoutPeerCertificate(der);
    expect([...out.subarray(0, 10)]).toEqual([0x30, 0x3f, 0x02, 0x01, 0x01, 0x02, 0x02, 0x03, 0x04, 0x04]);
    expect(out.length).toBe(2 + 63);
  });

  it('leaves alone what has no certificate or is not a session', () => {
    const cases = [
      Buffer.alloc(0),
      Buffer.from([0x30]),
      Buffer.from([0x04, 0x01, 0x00]), // not a SEQUENCE
      Buffer.from([0x30, 0x05, 0x02, 0x01, 0x01]), // shorter than it says
      Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01, 0x00]), // trailing bytes
      Buffer.from([0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00]), // indefinite length
      Buffer.from([0x30, 0x05, 0xa3, 0x05, 0x02, 0x01, 0x01]), // an element running past the end
      Buffer.from([0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x03, 0x04]), // no certificate in it
      Buffer.from([0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x02, 0x03, 0x03, 0xa3, 0x00]), // TLS 1.2
    ];
    for (const der of cases) expect(withoutPeerCertificate(der)).toBe(der);
  });
});
