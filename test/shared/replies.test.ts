import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { replyCatalogue, smtpError, smtpErrorCausedBy, smtpReply } from '../../src/shared/replies.js';
import { SmtpError, formatReply } from '../../src/shared/smtp-reply.js';

const catalogue = replyCatalogue();
const key = (code: number, enhanced: string) => `${code} ${enhanced}`;

/** The reply column of README.md's table under "What clients see", one string per row. */
function readmeReplyCells(): string[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## What clients see'));
  const lines = section.split('\n');
  const start = lines.findIndex((l) => /^\| situation\s+\| reply\s+\|$/.test(l));
  expect(start, 'README.md has the "situation | reply" table under "What clients see"').toBeGreaterThan(0);
  const rows: string[] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith('|')) break;
    rows.push(l.split('|')[2]!.trim());
  }
  return rows;
}

/** Every `ddd d.d.d[ text]` quoted in a cell. */
function quotedReplies(cell: string): { key: string; text?: string }[] {
  return [...cell.matchAll(/`(\d{3}) (\d\.\d{1,3}\.\d{1,3})(?: ([^`]+))?`/g)].map((m) => ({
    key: key(Number(m[1]), m[2]!),
    text: m[3],
  }));
}

describe('the reply catalogue', () => {
  it('builds a reply from its code and parameters', () => {
    expect(smtpReply('AUTH_REQUIRED')).toEqual({
      code: 530,
      enhanced: '5.7.0',
      text: 'Authentication required',
    });
    expect(smtpReply('POOL_TIMEOUT', 'a@example.com', 2500)).toEqual({
      code: 451,
      enhanced: '4.7.0',
      text: 'No upstream connection for a@example.com became free within 2.5 s',
    });
    expect(formatReply(smtpReply('MESSAGE_TOO_BIG', 1000))).toBe(
      '552 5.3.4 Message exceeds the maximum size of 1000 bytes',
    );
  });

  it('makes errors that carry the code, the reply and what caused them', () => {
    const e = smtpError('UNKNOWN_ACCOUNT', 'a@example.com');
    expect(e).toBeInstanceOf(SmtpError);
    expect(e.code).toBe('UNKNOWN_ACCOUNT');
    expect(e.reply).toEqual(smtpReply('UNKNOWN_ACCOUNT', 'a@example.com'));
    expect(e.message).toBe('451 4.3.0 Mailbox a@example.com is not configured for upstream relaying');
    const cause = new Error('ECONNREFUSED');
    const u = smtpErrorCausedBy(cause, 'UPSTREAM_UNREACHABLE', '127.0.0.1', 2626, 'connection refused');
    expect(u.cause).toBe(cause);
    expect(formatReply(u.reply)).toBe('451 4.4.1 Upstream 127.0.0.1:2626 unreachable: connection refused');
  });

  it('writes no reply twice', () => {
    const fixed = catalogue
      .filter((l) => l.text !== undefined)
      .map((l) => `${key(l.code, l.enhanced)} ${l.text}`);
    expect(new Set(fixed).size).toBe(fixed.length);
    expect(new Set(catalogue.map((l) => l.name)).size).toBe(catalogue.length);
  });

  it("answers every failure of the proxy's own with a 4xx; 5xx only for the client's own mistakes", () => {
    for (const l of catalogue) expect(l.code, l.name).toBeGreaterThanOrEqual(400);
    expect(catalogue.filter((l) => l.code >= 500).map((l) => l.name)).toEqual([
      'AUTH_REQUIRED',
      'AUTH_INVALID',
      'SENDER_NOT_A_MAILBOX',
      'MESSAGE_TOO_BIG',
      'BAD_ADDRESS',
    ]);
  });
});

describe("README.md's reply table agrees with the catalogue", () => {
  const cells = readmeReplyCells();
  // rows about upstream verdicts show the upstream's codes, passed through, not ours
  const ours = cells.filter((c) => !c.includes('upstream:')).flatMap(quotedReplies);

  it('lists every reply of the catalogue', () => {
    const listed = new Set(ours.map((r) => r.key));
    const missing = catalogue.filter((l) => !listed.has(key(l.code, l.enhanced))).map((l) => l.name);
    expect(missing).toEqual([]);
  });

  it('lists no reply that is not in the catalogue, and quotes texts exactly', () => {
    for (const r of ours) {
      const entries = catalogue.filter((l) => key(l.code, l.enhanced) === r.key);
      expect(entries.length, `README reply ${r.key} is in the catalogue`).toBeGreaterThan(0);
      if (r.text !== undefined) expect(entries.map((l) => l.text)).toContain(r.text);
    }
    expect(ours.length).toBeGreaterThan(10);
  });
});
