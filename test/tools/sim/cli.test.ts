import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { simRefreshToken } from '../../../src/tools/sim/index.js';
import { postForm, RawSmtp, simulateProgram } from './helpers.js';
import { waitFor } from '../../helpers/wait.js';

describe('simulate command', () => {
  afterEach(() => vi.restoreAllMocks());

  it.each([
    [['--drop', '2'], /option '--drop <rate>' argument '2' is invalid\. must be a number between 0 and 1/],
    [
      ['--smtp', 'nohost'],
      /option '--smtp <host:port>' argument 'nohost' is invalid\. "nohost" is not HOST:PORT/,
    ],
    [['--style', 'yahoo'], /option '--style <style>'.*must be google or microsoft/],
    [['--token-lifetime', '1.5'], /option '--token-lifetime <sec>'.*must be an integer >= 1/],
    [
      ['--max-connections-per-user', '-1'],
      /option '--max-connections-per-user <n>'.*must be an integer >= 0/,
    ],
  ])('rejects %j naming the option', async (args, pattern) => {
    const { cmd, errors } = simulateProgram();
    await expect(cmd.parseAsync(['simulate', ...args], { from: 'user' })).rejects.toThrow();
    expect(errors.join('')).toMatch(pattern);
  });

  it('prints the listening line, serves, writes the CA, and stops on SIGTERM', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sim-cli-'));
    const caFile = path.join(dir, 'ca.pem');
    const lines: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: any) => {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      return true;
    });
    const { cmd } = simulateProgram();
    const done = cmd.parseAsync(
      [
        'simulate',
        '--smtp',
        '127.0.0.1:0',
        '--smtp-tls',
        '127.0.0.1:0',
        '--http',
        '127.0.0.1:0',
        '--style',
        'microsoft',
        '--fail-5xx',
        '1',
        '--ca-out',
        caFile,
      ],
      { from: 'user' },
    );
    const json = await waitFor(
      'the listening line',
      () => lines.find((l) => l.startsWith('{')),
      (l) => l !== undefined,
    );
    const event = JSON.parse(json!);
    expect(event).toMatchObject({
      event: 'listening',
      smtp: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      smtpTls: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      http: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
    expect(event.tokenUrl).toBe(`http://${event.http}/token`);
    expect(lines.filter((l) => l.startsWith('simulator (microsoft)'))).toHaveLength(3);
    // The options took effect: microsoft wording, and the 5xx fault.
    const tok = await postForm(event.tokenUrl, {
      grant_type: 'refresh_token',
      client_id: 'c',
      refresh_token: simRefreshToken('cli@example.com'),
    });
    const [host, port] = event.smtpTls.split(':');
    const c = await RawSmtp.connect(
      { host, port: Number(port) },
      { tls: { ca: await readFile(caFile, 'utf8') } },
    );
    expect((await c.read())[0]).toMatch(/Microsoft ESMTP/);
    await c.cmd('EHLO cli.test');
    const auth = Buffer.from(`user=cli@example.com\x01auth=Bearer ${tok.body.access_token}\x01\x01`).toString(
      'base64',
    );
    expect(await c.cmd(`AUTH XOAUTH2 ${auth}`)).toEqual(['235 2.7.0 Authentication successful']);
    await c.cmd('MAIL FROM:<cli@example.com>');
    await c.cmd('RCPT TO:<r@example.com>');
    await c.cmd('DATA');
    expect((await c.cmd('Subject: x\r\n\r\nx\r\n.'))[0]).toMatch(/^550 5\.7\.1/);
    process.emit('SIGTERM', 'SIGTERM');
    await done;
    await c.closedPromise;
    expect(lines.at(-1)).toBe('simulator: SIGTERM, stopped');
    await expect(fetch(`http://${event.http}/stats`)).rejects.toThrow();
  });
});
