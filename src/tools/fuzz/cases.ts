// Hostile client input, generated from a seed: each case is what one client connection sends (byte
// chunks, optionally with pauses, optionally vanishing at the end). Families cover what SMTP
// servers get wrong: garbage, overlong lines, NUL / 8-bit bytes, bad AUTH, malformed addresses,
// pipelined junk, BDAT, recipient floods, DATA out of order, abrupt disconnects.

export const FAMILIES = [
  'random-bytes',
  'mutated-session',
  'overlong-lines',
  'auth-garbage',
  'address-garbage',
  'pipelined-garbage',
  'bdat',
  'recipient-flood',
  'out-of-order',
  'abrupt-disconnect',
] as const;
export type Family = (typeof FAMILIES)[number];

export interface FuzzCase {
  n: number;
  family: Family;
  /** sent in order; a number is a pause in ms */
  steps: (Buffer | number)[];
  /** destroy the socket right after the last step instead of reading replies and QUITting */
  vanish: boolean;
  /** the Message-ID inside, if the case carries a message */
  messageId?: string;
}

export interface Credentials {
  user: string;
  password: string;
}

type Rnd = () => number;
const int = (r: Rnd, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rnd, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const b = (s: string) => Buffer.from(s, 'latin1');
const plain = (c: Credentials) => Buffer.from(`\0${c.user}\0${c.password}`).toString('base64');

function randomBytes(r: Rnd, n: number, alphabet?: string): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++)
    out[i] = alphabet ? alphabet.charCodeAt(int(r, 0, alphabet.length - 1)) : int(r, 0, 255);
  return out;
}

/** A complete, valid session: the corpus the mutations start from. */
export function validSession(c: Credentials, id: string): string[] {
  return [
    'EHLO fuzz.test',
    `AUTH PLAIN ${plain(c)}`,
    `MAIL FROM:<${c.user}> SIZE=300`,
    'RCPT TO:<someone@example.net>',
    'DATA',
    `From: <${c.user}>\r\nTo: <someone@example.net>\r\nSubject: fuzz\r\nMessage-ID: ${id}\r\n\r\nhello\r\n.`,
    'NOOP',
    'RSET',
    'QUIT',
  ];
}

const WEIRD = ['\0', '\xff', '\r', '\n', ' ', ':', '<', '>', '@', '=', '\t', '\x1b', 'é', '\x7f'];
const VERBS = [
  'EHLO',
  'HELO',
  'AUTH',
  'MAIL',
  'RCPT',
  'DATA',
  'RSET',
  'NOOP',
  'QUIT',
  'VRFY',
  'EXPN',
  'HELP',
  'STARTTLS',
  'BDAT',
  'XCLIENT',
  'ETRN',
  'TURN',
];

function mutateLine(r: Rnd, line: string): string {
  switch (int(r, 0, 6)) {
    case 0: {
      const i = int(r, 0, line.length);
      return line.slice(0, i) + pick(r, WEIRD) + line.slice(i);
    }
    case 1:
      return line.slice(0, int(r, 0, line.length));
    case 2:
      return line.toLowerCase();
    case 3:
      return line + ' ' + randomBytes(r, int(r, 1, 40), 'abcXYZ=<>@:;,. \t').toString('latin1');
    case 4:
      return pick(r, VERBS) + line.slice(line.indexOf(' ') < 0 ? line.length : line.indexOf(' '));
    case 5:
      return line.replace(/[A-Za-z]/, (ch) => String.fromCharCode(ch.charCodeAt(0) ^ 0x80));
    default:
      return line + line;
  }
}

function session(lines: string[], sep = '\r\n'): Buffer {
  return b(lines.join(sep) + sep);
}

export function makeCase(n: number, family: Family, r: Rnd, cred: Credentials): FuzzCase {
  const id = `<fuzz-${n}-${int(r, 0, 1e9)}@fuzz.test>`;
  const login = [`EHLO fuzz.test`, `AUTH PLAIN ${plain(cred)}`];
  const c = (steps: (Buffer | number)[], extra: Partial<FuzzCase> = {}): FuzzCase => ({
    n,
    family,
    steps,
    vanish: false,
    ...extra,
  });
  switch (family) {
    case 'random-bytes':
      return c([randomBytes(r, int(r, 1, 3000))]);
    case 'mutated-session': {
      const lines = validSession(cred, id);
      for (let k = int(r, 1, 4); k > 0; k--) {
        const i = int(r, 0, lines.length - 1);
        const op = int(r, 0, 3);
        if (op === 0) lines.splice(i, 1);
        else if (op === 1) lines.splice(i, 0, lines[int(r, 0, lines.length - 1)]!);
        else lines[i] = mutateLine(r, lines[i]!);
      }
      const bytes = session(lines, pick(r, ['\r\n', '\r\n', '\n', '\r']));
      // a mutation may have hit the Message-ID itself: then the upstream would store another id,
      // and this case cannot be traced (it is still checked for well-formed replies)
      const traceable = bytes.includes(`Message-ID: ${id}\r\n`);
      return c([bytes], traceable ? { messageId: id } : {});
    }
    case 'overlong-lines': {
      const len = pick(r, [513, 1001, 4096, 65_536, 1_100_000, 3_000_000]);
      const where = pick(r, ['command', 'ehlo', 'mail', 'auth', 'no-newline']);
      const long = randomBytes(r, len, 'abcdefghijklmnopqrstuvwxyz').toString('latin1');
      const line =
        where === 'ehlo'
          ? `EHLO ${long}`
          : where === 'mail'
            ? `MAIL FROM:<${long}@example.com>`
            : where === 'auth'
              ? `AUTH PLAIN ${long}`
              : long;
      const pre = where === 'mail' ? login : [];
      return c([session(pre), b(line + (where === 'no-newline' ? '' : '\r\n'))]);
    }
    case 'auth-garbage': {
      const v = pick(r, [
        'AUTH PLAIN !!!not-base64!!!',
        'AUTH PLAIN =',
        'AUTH PLAIN',
        `AUTH PLAIN ${Buffer.from('only-one-part').toString('base64')}`,
        `AUTH PLAIN ${Buffer.from(`\0${cred.user}`).toString('base64')}`,
        `AUTH PLAIN ${Buffer.from(`\0\0\0\0`).toString('base64')}`,
        `AUTH PLAIN ${randomBytes(r, 200).toString('base64')}`,
        'AUTH LOGIN',
        'AUTH LOGIN %%%',
        'AUTH XOAUTH2 dXNlcj1h',
        'AUTH CRAM-MD5',
        'AUTH',
        'AUTH PLAIN ' + 'QUFB'.repeat(5000),
      ]);
      const follow =
        v === 'AUTH LOGIN' || v === 'AUTH PLAIN'
          ? [pick(r, ['*', '!!!', '', '=', randomBytes(r, 30).toString('base64')])]
          : [];
      return c([session(['EHLO fuzz.test', v, ...follow, 'MAIL FROM:<a@example.com>'])]);
    }
    case 'address-garbage': {
      const addr = pick(r, [
        `MAIL FROM:<${cred.user}> SIZE=-1`,
        `MAIL FROM:<${cred.user}> SIZE=99999999999999999999`,
        `MAIL FROM:<<${cred.user}>>`,
        `MAIL FROM:${cred.user}`,
        `MAIL FROM:<${cred.user}`,
        'MAIL FROM:<>',
        `MAIL FROM:<${'a'.repeat(400)}@example.com>`,
        'MAIL FROM:<"quoted\\" local"@example.com>',
        'MAIL FROM:<@route,@x:user@example.com>',
        `MAIL FROM:<${cred.user}> BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x`,
        `MAIL FROM:<${cred.user}> ${randomBytes(r, 60, 'A=;,<>@ ').toString('latin1')}`,
        'MAIL FROM:<用户@例子.广告>',
        'MAIL TO:<x@example.com>',
      ]);
      const rcpt = pick(r, [
        'RCPT TO:<>',
        'RCPT TO:<a@b@c>',
        'RCPT TO:<postmaster>',
        'RCPT TO:someone@example.net',
        `RCPT TO:<${'x'.repeat(300)}@example.net>`,
        'RCPT TO:<someone@example.net> NOTIFY=NEVER',
      ]);
      return c([session([...login, addr, rcpt, 'RSET'])]);
    }
    case 'pipelined-garbage': {
      const lines = [...login];
      for (let k = int(r, 10, 80); k > 0; k--) {
        lines.push(pick(r, VERBS) + ' ' + randomBytes(r, int(r, 0, 30), 'abc<>@:=. ').toString('latin1'));
      }
      return c([session(lines)]);
    }
    case 'bdat':
      return c([
        session([...login, `MAIL FROM:<${cred.user}>`, 'RCPT TO:<someone@example.net>', 'BDAT 10 LAST']),
        b('0123456789'),
        b('NOOP\r\n'),
      ]);
    case 'recipient-flood': {
      const rcpts = Array.from({ length: int(r, 101, 400) }, (_, i) => `RCPT TO:<r${i}@example.net>`);
      return c([session([...login, `MAIL FROM:<${cred.user}>`, ...rcpts, 'RSET'])]);
    }
    case 'out-of-order':
      return c([
        session(
          pick(r, [
            ['DATA'],
            ['RCPT TO:<x@example.net>'],
            ['EHLO a', 'DATA', '.'],
            [...login, 'DATA'],
            [...login, 'RCPT TO:<x@example.net>', 'DATA'],
            ['MAIL FROM:<a@b>', 'MAIL FROM:<a@b>'],
            [...login, `AUTH PLAIN ${plain(cred)}`],
          ]),
        ),
      ]);
    case 'abrupt-disconnect': {
      const whole = session(validSession(cred, id));
      return c([whole.subarray(0, int(r, 1, whole.length - 1))], { vanish: true, messageId: id });
    }
  }
}
