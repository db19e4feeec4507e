// DataReader (the DATA body off the wire) against writeDotStuffed (the upstream side's stuffing):
// whatever a message holds and however the bytes are split into chunks, unstuffing gives back the
// message and the bytes after the terminator, and nothing but CRLF "." CRLF ends it.
import { describe, expect, it } from 'vitest';
import { DataReader } from '../../src/smtp/wire/data-reader.js';
import { writeDotStuffed } from '../../src/upstream/dot-stuff.js';
import { seededRandom } from '../../src/tools/harness/random.js';

const PIPELINED = Buffer.from('QUIT\r\n');

const rng = seededRandom;

/** pieces that make the line starts and breaks interesting */
const ATOMS = [
  '.',
  '..',
  '...',
  '\n',
  '\r',
  '\r\n',
  '\r\n.\r\n',
  '\n.\n',
  '\r\n.\n',
  '\n.\r\n',
  '\r.\r',
  '.\r\n',
  '\r\n..\r\n',
  'a',
  'Subject: x',
  ' ',
];

function randomMessage(r: () => number): Buffer {
  const parts: Buffer[] = [];
  const n = Math.floor(r() * 24);
  for (let i = 0; i < n; i++) {
    if (r() < 0.2) {
      const bytes = Buffer.alloc(1 + Math.floor(r() * 4));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(r() * 256);
      parts.push(bytes);
    } else {
      parts.push(Buffer.from(ATOMS[Math.floor(r() * ATOMS.length)]!, 'latin1'));
    }
  }
  return Buffer.concat(parts);
}

/** What writeDotStuffed puts on the wire for `message`, terminator included. */
function stuffed(message: Buffer): Buffer {
  const out: Buffer[] = [];
  writeDotStuffed({ write: (c) => out.push(Buffer.from(c)) }, [message]);
  return Buffer.concat(out);
}

/** writeDotStuffed adds a CRLF to a non-empty message that does not end in one; DATA carries it. */
function expectedContent(message: Buffer): Buffer {
  if (message.length === 0) return message;
  const crlf = message.length >= 2 && message[message.length - 2] === 0x0d && message.at(-1) === 0x0a;
  return crlf ? message : Buffer.concat([message, Buffer.from('\r\n')]);
}

interface Outcome {
  content: Buffer;
  bytes: number;
  /** the bytes after the terminator: the chunk's remainder plus the chunks never fed */
  after: Buffer | undefined;
}

/** Feed `chunks` until the reader says the message ended. */
function read(chunks: Buffer[]): Outcome {
  const got: Buffer[] = [];
  const reader = new DataReader((c) => got.push(Buffer.from(c)));
  for (let i = 0; i < chunks.length; i++) {
    const rest = reader.feed(chunks[i]!);
    if (rest !== undefined)
      return {
        content: Buffer.concat(got),
        bytes: reader.bytes,
        after: Buffer.concat([rest, ...chunks.slice(i + 1)]),
      };
  }
  return { content: Buffer.concat(got), bytes: reader.bytes, after: undefined };
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push(buf.subarray(from, c));
    from = c;
  }
  out.push(buf.subarray(from));
  return out;
}

function bytesOf(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) out.push(buf.subarray(i, i + 1));
  return out;
}

function expectRoundTrip(message: Buffer, chunks: Buffer[], label: string): void {
  const want = expectedContent(message);
  const o = read(chunks);
  const ctx = `${label}: message ${JSON.stringify(message.toString('latin1'))}`;
  expect(o.after, ctx).toBeDefined();
  expect(o.content.toString('latin1'), ctx).toBe(want.toString('latin1'));
  expect(o.bytes, ctx).toBe(want.length);
  expect(o.after!.toString('latin1'), ctx).toBe(PIPELINED.toString('latin1'));
}

describe('DataReader: unstuffing undoes writeDotStuffed, however the input is split', () => {
  it('random messages, fed whole, byte by byte, at every single cut and at random cuts', () => {
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      const message = randomMessage(r);
      const wire = Buffer.concat([stuffed(message), PIPELINED]);
      expectRoundTrip(message, [wire], `seed ${seed} whole`);
      expectRoundTrip(message, bytesOf(wire), `seed ${seed} 1-byte chunks`);
      for (let cut = 0; cut <= wire.length; cut++)
        expectRoundTrip(message, splitAt(wire, [cut]), `seed ${seed} cut at ${cut}`);
      for (let k = 0; k < 5; k++) {
        const cuts = Array.from({ length: 1 + Math.floor(r() * 6) }, () => Math.floor(r() * wire.length));
        expectRoundTrip(message, splitAt(wire, cuts), `seed ${seed} cuts ${cuts.join(',')}`);
      }
    }
  });

  it('empty chunks in between change nothing', () => {
    const message = Buffer.from('.a\r\n..b\r\n');
    const wire = Buffer.concat([stuffed(message), PIPELINED]);
    const chunks = bytesOf(wire).flatMap((b) => [Buffer.alloc(0), b]);
    expectRoundTrip(message, chunks, 'with empty chunks');
  });

  it('the stuffing of the hand-picked cases is what RFC 5321 4.5.2 says', () => {
    expect(stuffed(Buffer.from('.a\r\n')).toString()).toBe('..a\r\n.\r\n');
    expect(stuffed(Buffer.from('a')).toString()).toBe('a\r\n.\r\n');
    expect(stuffed(Buffer.alloc(0)).toString()).toBe('.\r\n');
  });
});

describe('DataReader: what ends DATA', () => {
  for (const lure of ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r', '\r.\n', '\n.\r']) {
    it(`${JSON.stringify(lure)} does not end the message (SMTP smuggling)`, () => {
      const smuggled = `a${lure}MAIL FROM:<evil@example.com>\r\n`;
      const wire = Buffer.from(`${smuggled}\r\n.\r\nQUIT\r\n`);
      for (const chunks of [[wire], bytesOf(wire)]) {
        const o = read(chunks);
        expect(o.content.toString()).toBe(`${smuggled}\r\n`);
        expect(o.after?.toString()).toBe('QUIT\r\n');
      }
    });
  }

  it('a message of nothing but the lures never ends', () => {
    const wire = Buffer.from('\n.\n\r\n.\n\n.\r\n\r.\r.\n.\r');
    for (const chunks of [[wire], bytesOf(wire)]) {
      const o = read(chunks);
      expect(o.after).toBeUndefined();
      expect(o.content.toString('latin1')).toBe(wire.toString('latin1'));
      expect(o.bytes).toBe(wire.length);
    }
  });

  it('".\\r\\n" at the very start of DATA is an empty message', () => {
    for (const chunks of [[Buffer.from('.\r\nQUIT\r\n')], bytesOf(Buffer.from('.\r\nQUIT\r\n'))]) {
      const o = read(chunks);
      expect(o.content.length).toBe(0);
      expect(o.bytes).toBe(0);
      expect(o.after?.toString()).toBe('QUIT\r\n');
    }
  });

  it('".." at the start of DATA is an escaped dot', () => {
    const o = read([Buffer.from('..\r\n...x\r\n.\r\n')]);
    expect(o.content.toString()).toBe('.\r\n..x\r\n');
    expect(o.bytes).toBe(o.content.length);
    expect(o.after?.length).toBe(0);
  });

  it('a dot not followed by CRLF at the start of a line is content', () => {
    const o = read([Buffer.from('.x\r\n.\rx\r\n.\r\n')]);
    expect(o.content.toString()).toBe('.x\r\n.\rx\r\n');
  });

  it('the terminator split as "\\r" | "\\n.\\r" | "\\n" still ends it, and only there', () => {
    const o = read([Buffer.from('hi\r'), Buffer.from('\n.\r'), Buffer.from('\nNOOP\r\n')]);
    expect(o.content.toString()).toBe('hi\r\n');
    expect(o.after?.toString()).toBe('NOOP\r\n');
  });

  it('bytes counts the content handed on, without escape dots', () => {
    const reader = new DataReader(() => undefined);
    expect(reader.feed(Buffer.from('..a\r\n'))).toBeUndefined();
    expect(reader.bytes).toBe(4);
    expect(reader.feed(Buffer.from('b\r\n.\r\n'))?.length).toBe(0);
    expect(reader.bytes).toBe(7);
  });
});
