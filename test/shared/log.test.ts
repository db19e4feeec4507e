import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, FLUSH_MS, messageLog, silentLogger, type MessageLine } from '../../src/shared/log.js';
import { waitFor } from '../helpers/wait.js';

function capture(): { stream: Writable; lines: () => string[] } {
  let out = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  return { stream, lines: () => out.split('\n').filter(Boolean) };
}

const line: MessageLine = {
  txid: 'ab12c',
  account: 'alice"\\@example.com', // characters JSON must escape
  rcpts: 2,
  size: 2048,
  result: 'delivered',
  reply: '250 2.0.0',
  upstream: '250 2.0.0',
  ms: 1.5,
};

describe('the message line', () => {
  it('is the JSON pino writes for log.info(fields, "message"), key for key, in the same order', () => {
    const a = capture();
    const b = capture();
    const fast = createLogger({ destination: a.stream, pretty: false });
    const viaPino = createLogger({ destination: b.stream, pretty: false });
    messageLog(fast)(line);
    viaPino.info(line, 'message');
    const { upstream: _, ...withoutUpstream } = line;
    messageLog(fast)(withoutUpstream);
    viaPino.info({ ...withoutUpstream, upstream: undefined }, 'message');
    const [x1, x2] = a.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    const [y1, y2] = b.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const [x, y] of [
      [x1!, y1!],
      [x2!, y2!],
    ]) {
      expect(typeof x.time).toBe('number');
      expect(Math.abs((x.time as number) - (y.time as number))).toBeLessThan(1000);
      expect(Object.keys(x)).toEqual(Object.keys(y));
      expect({ ...x, time: 0 }).toEqual({ ...y, time: 0 });
    }
    expect(x1).toMatchObject({ level: 30, account: line.account, msg: 'message' });
    expect(x2).not.toHaveProperty('upstream');
  });

  it('follows the level: nothing below info', () => {
    const a = capture();
    messageLog(createLogger({ destination: a.stream, pretty: false, level: 'warn' }))(line);
    expect(a.lines()).toEqual([]);
  });

  it('goes through log.info on a logger createLogger did not make', () => {
    expect(() => messageLog(silentLogger)(line)).not.toThrow();
  });
});

describe('writes to a file descriptor', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('are batched: lines leave together, within FLUSH_MS', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-log-'));
    const file = path.join(dir, 'out.log');
    const fd = fs.openSync(file, 'a');
    const log = createLogger({ fd, pretty: false });
    log.warn({ n: 1 }, 'first');
    messageLog(log)(line);
    log.warn({ n: 2 }, 'second');
    expect(fs.readFileSync(file, 'utf8')).toBe(''); // still gathering
    // the first time anything is there, all of it is: one batch
    const text = await waitFor(
      `the batch (due after ${FLUSH_MS} ms)`,
      () => fs.readFileSync(file, 'utf8'),
      (t) => t !== '',
      5000,
      5,
    );
    const lines = text.split('\n').filter(Boolean);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['first', 'message', 'second']);
    fs.closeSync(fd);
  });
});
