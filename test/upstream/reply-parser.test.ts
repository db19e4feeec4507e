import { describe, expect, it } from 'vitest';
import { ReplyParser, ReplyParseError } from '../../src/upstream/reply-parser.js';
import type { SmtpReply } from '../../src/shared/smtp-reply.js';

function parseAll(chunks: (string | Buffer)[]): SmtpReply[] {
  const out: SmtpReply[] = [];
  const p = new ReplyParser((r) => out.push(r));
  for (const c of chunks) p.push(typeof c === 'string' ? Buffer.from(c) : c);
  return out;
}

const STREAM =
  '220 mx.test ESMTP\r\n' +
  '250-mx.test at your service\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250 SMTPUTF8\r\n' +
  '550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check it.\r\n' +
  '354  Go ahead\r\n' +
  '250 2.0.0 OK  1700000000 abc - gsmtp\r\n' +
  '421\r\n';

const EXPECTED: SmtpReply[] = [
  { code: 220, enhanced: '', text: 'mx.test ESMTP' },
  { code: 250, enhanced: '', text: 'mx.test at your service\nPIPELINING\nSIZE 35882577\nSMTPUTF8' },
  {
    code: 550,
    enhanced: '5.1.1',
    text: 'The email account that you tried to reach does not exist.\nPlease check it.',
  },
  { code: 354, enhanced: '', text: ' Go ahead' },
  { code: 250, enhanced: '2.0.0', text: 'OK  1700000000 abc - gsmtp' },
  { code: 421, enhanced: '', text: '' },
];

describe('ReplyParser', () => {
  it('parses several replies, multi-line ones and enhanced codes from one chunk', () => {
    expect(parseAll([STREAM])).toEqual(EXPECTED);
  });

  it('gives the same replies however the bytes are split across chunks', () => {
    const bytes = Buffer.from(STREAM);
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(parseAll([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(EXPECTED);
    }
    expect(parseAll([...bytes].map((b) => Buffer.from([b])))).toEqual(EXPECTED);
  });

  it('keeps an enhanced code whose class does not match the reply code as text', () => {
    expect(parseAll(['250 5.1.1 odd\r\n'])).toEqual([{ code: 250, enhanced: '', text: '5.1.1 odd' }]);
  });

  it('rejects garbage instead of guessing', () => {
    expect(() => parseAll(['hello\r\n'])).toThrow(ReplyParseError);
    expect(() => parseAll(['250-a\r\n550 b\r\n'])).toThrow(/changed code/);
  });
});
