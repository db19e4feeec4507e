// MAIL FROM / RCPT TO parsing and the EHLO name: the verdicts smtp-server 3.21.6 gave, except that
// the address is kept as written (no punycode to Unicode).
import { describe, expect, it } from 'vitest';
import { acceptableHeloName, parseAddressCommand, valuelessParam } from '../../src/smtp/wire/commands.js';

const mail = (line: string) => parseAddressCommand(line, false);
const rcpt = (line: string) => parseAddressCommand(line, true);
const SYNTAX = { error: 'syntax' };

describe('parseAddressCommand', () => {
  it('a plain address, the verb in any case, a space after the colon', () => {
    expect(mail('MAIL FROM:<a@example.com>')).toEqual({ address: 'a@example.com', params: {} });
    expect(mail('mail from: <a@example.com>')).toEqual({ address: 'a@example.com', params: {} });
    expect(rcpt('Rcpt To:<b@example.net>')).toEqual({ address: 'b@example.net', params: {} });
  });

  it('the wrong verb, no colon, no angle brackets or stray ones are syntax errors', () => {
    expect(mail('RCPT TO:<a@example.com>')).toEqual(SYNTAX);
    expect(rcpt('MAIL FROM:<a@example.com>')).toEqual(SYNTAX);
    expect(mail('MAIL FROM <a@example.com>')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:a@example.com')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:<a@example.com')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:<<a@example.com>>')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:<a<b@example.com>')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:')).toEqual(SYNTAX);
  });

  it('the null sender is accepted as an empty address (RCPT refuses it in the session)', () => {
    expect(mail('MAIL FROM:<>')).toEqual({ address: '', params: {} });
    expect(mail('MAIL FROM:<> BODY=8BITMIME')).toEqual({ address: '', params: { BODY: '8BITMIME' } });
  });

  it('a source route is ignored (RFC 5321 4.1.2, appendix C)', () => {
    expect(mail('MAIL FROM:<@relay.example.org:a@example.com>')).toEqual({
      address: 'a@example.com',
      params: {},
    });
    expect(rcpt('RCPT TO:<@one.example,@two.example:b@example.net>')).toEqual({
      address: 'b@example.net',
      params: {},
    });
  });

  it('parameters: keys upper-cased, a bare keyword is true, "KEY=" is true, values xtext-decoded', () => {
    expect(mail('MAIL FROM:<a@example.com> size=1000 body=8BITMIME SMTPUTF8 ENVID= RET=HDRS')).toEqual({
      address: 'a@example.com',
      params: { SIZE: '1000', BODY: '8BITMIME', SMTPUTF8: true, ENVID: true, RET: 'HDRS' },
    });
    expect(mail('MAIL FROM:<a@example.com> ENVID=a+41b+2Bc')).toEqual({
      address: 'a@example.com',
      params: { ENVID: 'aAb+c' },
    });
    // lower-case hex is not xtext: left as it is
    expect(mail('MAIL FROM:<a@example.com> ENVID=a+4a')).toMatchObject({ params: { ENVID: 'a+4a' } });
    // "=" inside a value stays in the value
    expect(rcpt('RCPT TO:<b@example.net> ORCPT=rfc822;b=c@example.net')).toMatchObject({
      params: { ORCPT: 'rfc822;b=c@example.net' },
    });
  });

  it('a parameter value carrying a control character, even xtext-encoded, is refused', () => {
    expect(mail('MAIL FROM:<a@example.com> ENVID=ab+0D+0Acd')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:<a@example.com> ENVID=ab+00')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:<a@example.com> ENVID=ab+7F')).toEqual(SYNTAX);
    expect(rcpt('RCPT TO:<b@example.net> ORCPT=rfc822;x+0Ay')).toEqual(SYNTAX);
    expect(mail('MAIL FROM:<a@example.com> ENVID=a\x01b')).toEqual(SYNTAX);
  });

  it('a parameter given twice is refused by name (case-insensitively); a syntax error wins', () => {
    expect(mail('MAIL FROM:<a@example.com> SIZE=1 size=2')).toEqual({ error: 'duplicate', param: 'SIZE' });
    expect(rcpt('RCPT TO:<b@example.net> NOTIFY=NEVER NOTIFY=NEVER')).toEqual({
      error: 'duplicate',
      param: 'NOTIFY',
    });
    expect(mail('MAIL FROM:<a@@example.com> SIZE=1 SIZE=2')).toEqual(SYNTAX);
  });

  it('postmaster without a domain is a recipient, never a sender', () => {
    expect(rcpt('RCPT TO:<postmaster>')).toEqual({ address: 'postmaster', params: {} });
    expect(rcpt('RCPT TO:<PostMaster>')).toEqual({ address: 'PostMaster', params: {} });
    expect(mail('MAIL FROM:<postmaster>')).toEqual(SYNTAX);
    expect(rcpt('RCPT TO:<postmaster@example.com>')).toEqual({
      address: 'postmaster@example.com',
      params: {},
    });
  });

  it('IP literals: IPv4 and IPv6: (any case) accepted, anything else in brackets refused', () => {
    expect(rcpt('RCPT TO:<b@[192.0.2.1]>')).toMatchObject({ address: 'b@[192.0.2.1]' });
    expect(rcpt('RCPT TO:<b@[IPv6:2001:db8::1]>')).toMatchObject({ address: 'b@[IPv6:2001:db8::1]' });
    expect(rcpt('RCPT TO:<b@[ipv6:::1]>')).toMatchObject({ address: 'b@[ipv6:::1]' });
    expect(rcpt('RCPT TO:<b@[192.0.2.256]>')).toEqual(SYNTAX);
    expect(rcpt('RCPT TO:<b@[2001:db8::1]>')).toEqual(SYNTAX);
    expect(rcpt('RCPT TO:<b@[IPv6:2001:db8::g]>')).toEqual(SYNTAX);
    expect(rcpt('RCPT TO:<b@[example.com]>')).toEqual(SYNTAX);
  });

  it('bad addresses are refused', () => {
    for (const bad of [
      'a@b@example.com',
      '@example.com',
      'a@',
      'nodomain',
      '.a@example.com',
      'a.@example.com',
      'a..b@example.com',
      'a@.example.com',
      'a@example.com.',
      'a@example..com',
      'a@ex-.ample.com',
      'a@ex.-ample.com',
      'a@exa_mple.com',
      'a@exa mple.com',
      'a\u200B@example.com',
      'a@exam\u200Bple.com',
      'a\u2060b@example.com',
      '\uFEFFa@example.com',
      'a\x00b@example.com',
      'a\x1Fb@example.com',
      'a@example.com\x7F',
      'a\u0085b@example.com',
    ]) {
      expect(mail(`MAIL FROM:<${bad}>`), JSON.stringify(bad)).toEqual(SYNTAX);
      expect(rcpt(`RCPT TO:<${bad}>`), JSON.stringify(bad)).toEqual(SYNTAX);
    }
  });

  it('the zero-width joiners of some scripts are not refused (they appear in IDNs)', () => {
    expect(mail('MAIL FROM:<a\u200Db@example.com>')).toMatchObject({ address: 'a\u200Db@example.com' });
  });

  it('the address is at most 253 characters (RFC 5321 4.5.3.1.3: the path less "<" and ">")', () => {
    const domain = '@' + 'd'.repeat(60) + '.example.com'; // 73 characters
    const at253 = 'l'.repeat(253 - domain.length) + domain;
    expect(at253.length).toBe(253);
    expect(mail(`MAIL FROM:<${at253}>`)).toEqual({ address: at253, params: {} });
    expect(mail(`MAIL FROM:<l${at253}>`)).toEqual(SYNTAX);
  });

  it('a UTF-8 address (SMTPUTF8) is kept as written, local part and domain; xn-- stays xn--', () => {
    expect(mail('MAIL FROM:<用户@例子.广告> SMTPUTF8')).toEqual({
      address: '用户@例子.广告',
      params: { SMTPUTF8: true },
    });
    expect(rcpt('RCPT TO:<jörg@bücher.example>')).toMatchObject({ address: 'jörg@bücher.example' });
    expect(rcpt('RCPT TO:<a@xn--bcher-kva.example>')).toMatchObject({ address: 'a@xn--bcher-kva.example' });
  });

  it('extra whitespace between parameters is tolerated', () => {
    expect(mail('MAIL FROM:<a@example.com>   SIZE=10\tBODY=7BIT  ')).toEqual({
      address: 'a@example.com',
      params: { SIZE: '10', BODY: '7BIT' },
    });
  });
});

describe('valuelessParam', () => {
  it('names the first of BODY, SIZE, RET, ENVID given without a value', () => {
    expect(valuelessParam({})).toBeUndefined();
    expect(valuelessParam({ SIZE: '10', BODY: '8BITMIME', SMTPUTF8: true })).toBeUndefined();
    expect(valuelessParam({ SIZE: true })).toBe('SIZE');
    expect(valuelessParam({ ENVID: true, BODY: true })).toBe('BODY');
    expect(valuelessParam({ RET: true })).toBe('RET');
    expect(valuelessParam({ ENVID: true })).toBe('ENVID');
    expect(valuelessParam({ NOTIFY: true }, true)).toBe('NOTIFY');
    expect(valuelessParam({ ORCPT: true, SIZE: true }, true)).toBe('ORCPT');
    const parsed = mail('MAIL FROM:<a@example.com> SIZE=');
    expect('params' in parsed && valuelessParam(parsed.params)).toBe('SIZE');
  });
});

describe('acceptableHeloName', () => {
  it('anything printable up to 300 characters: names, IP literals, Windows machine names', () => {
    for (const ok of [
      'client.example.com',
      '[192.0.2.1]',
      '[IPv6:::1]',
      'DESKTOP-ABC_1',
      'localhost',
      'ä.example',
    ])
      expect(acceptableHeloName(ok), ok).toBe(true);
    expect(acceptableHeloName('x'.repeat(300))).toBe(true);
  });

  it('empty, over 300 characters, or carrying a control character: refused', () => {
    expect(acceptableHeloName('')).toBe(false);
    expect(acceptableHeloName('x'.repeat(301))).toBe(false);
    for (const bad of ['a\rb', 'a\nb', 'a\x00', '\x7F', 'a\tb', 'a\u0085'])
      expect(acceptableHeloName(bad), JSON.stringify(bad)).toBe(false);
  });
});
