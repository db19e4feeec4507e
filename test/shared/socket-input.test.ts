// A socket's input handed to one function: every byte in order, in Buffers of its own, with pause,
// stop, end and close working as with 'data' events, and 'data' where the direct path cannot be had.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectInput, readSocket } from '../../src/shared/socket-input.js';
import { selfSignedCert } from '../upstream/helpers.js';
import { until } from '../helpers/wait.js';

let cert: { cert: string; key: string };
const cleanup: (() => void)[] = [];

beforeAll(async () => {
  cert = await selfSignedCert();
});

afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A listening server and a connected client; resolves with both ends once accepted. */
async function pair(): Promise<{ accepted: net.Socket; client: net.Socket }> {
  let accept!: (s: net.Socket) => void;
  const got = new Promise<net.Socket>((r) => (accept = r));
  const server = net.createServer({ noDelay: true }, (s) => accept(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const accepted = await got;
  cleanup.push(() => {
    client.destroy();
    accepted.destroy();
    server.close();
  });
  return { accepted, client };
}

/** Write `payload` in uneven pieces, some in the same event-loop turn. */
async function writeInPieces(to: net.Socket, payload: Buffer): Promise<void> {
  for (let off = 0, i = 0; off < payload.length; i++) {
    const n = [1, 7, 1500, 70_000, 3][i % 5];
    to.write(payload.subarray(off, off + n));
    off += n;
    if (i % 3 === 0) await new Promise((r) => setImmediate(r));
  }
}

describe('readSocket', () => {
  it('reads an accepted socket directly: every byte in order, each chunk a Buffer of its own', async () => {
    const { accepted, client } = await pair();
    const chunks: Buffer[] = [];
    const input = readSocket(accepted, (c) => chunks.push(c));
    expect(input.direct).toBe(true);
    const payload = randomBytes(1024 * 1024);
    await writeInPieces(client, payload);
    await until(() => chunks.reduce((n, c) => n + c.length, 0) >= payload.length);
    // kept chunks are not overwritten by later reads
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
    expect(chunks.length).toBeGreaterThan(1);
  });

  it('delivers nothing while paused and the rest after resume', async () => {
    const { accepted, client } = await pair();
    let got = '';
    readSocket(accepted, (c) => (got += c.toString()));
    client.write('one\r\n');
    await until(() => got === 'one\r\n');
    accepted.pause();
    client.write('two\r\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toBe('one\r\n');
    accepted.resume();
    await until(() => got === 'one\r\ntwo\r\n');
  });

  it('hands over nothing after stop, and end and close still come', async () => {
    const { accepted, client } = await pair();
    let got = '';
    const input = readSocket(accepted, (c) => (got += c.toString()));
    let ended = false;
    let closed = false;
    accepted.on('end', () => (ended = true));
    accepted.on('close', () => (closed = true));
    client.write('before\r\n');
    await until(() => got === 'before\r\n');
    input.stop();
    client.end('after\r\n');
    await until(() => ended && closed);
    expect(got).toBe('before\r\n');
  });

  it("reads through 'data' what the stream already holds, in order", async () => {
    const { accepted, client } = await pair();
    accepted.pause();
    accepted.unshift(Buffer.from('held '));
    let got = '';
    const input = readSocket(accepted, (c) => (got += c.toString()));
    expect(input.direct).toBe(false);
    accepted.resume(); // as the server does after a PROXY header
    client.write('then more');
    await until(() => got === 'held then more');
  });

  it('reads both ends of TLS over an existing socket directly (STARTTLS)', async () => {
    const { accepted, client } = await pair();
    const server = new tls.TLSSocket(accepted, { isServer: true, ...cert });
    const secureClient = tls.connect({ socket: client, ca: cert.cert, servername: 'localhost' });
    let atServer = '';
    let atClient = '';
    const serverInput = readSocket(server, (c) => (atServer += c.toString()));
    const clientInput = readSocket(secureClient, (c) => (atClient += c.toString()));
    expect([serverInput.direct, clientInput.direct]).toEqual([true, true]);
    secureClient.write('EHLO client\r\n');
    server.write('250 hello\r\n');
    await until(() => atServer === 'EHLO client\r\n' && atClient === '250 hello\r\n');
    // the peer's close reaches a socket nobody reads through 'data' (the pool learns of it so)
    let closed = false;
    secureClient.on('close', () => (closed = true));
    server.end('221 bye\r\n');
    await until(() => closed);
    expect(atClient).toBe('250 hello\r\n221 bye\r\n');
  });
});

describe('connectInput', () => {
  it('feeds a socket net.connect opens, and stop ends it', async () => {
    let accept!: (s: net.Socket) => void;
    const got = new Promise<net.Socket>((r) => (accept = r));
    const server = net.createServer((s) => accept(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    let text = '';
    const { onread, input } = connectInput((c) => (text += c.toString()));
    const sock = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', onread });
    const accepted = await got;
    cleanup.push(() => {
      sock.destroy();
      accepted.destroy();
      server.close();
    });
    accepted.write('220 hi\r\n');
    await until(() => text === '220 hi\r\n');
    input.stop();
    accepted.write('more\r\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(text).toBe('220 hi\r\n');
  });
});
