// FakeSmtpServer: a tiny raw SMTP server on 127.0.0.1 for tests, whose every reply can be scripted
// (exact texts, drops, silence, delays) and which records what arrived: every chunk, command and
// message, the AUTH attempts, and which commands came in one write (to see pipelining). BDAT
// (RFC 3030) is understood whether or not `caps` offer CHUNKING; a chunk is answered once its octets
// are in, and the chunks up to BDAT LAST are the message as sent (no un-stuffing). It plays
// the upstream for the relay's tests and the target for the load generator's.
import net from 'node:net';

export interface StoredMessage {
  from: string;
  to: string[];
  data: Buffer;
}

export interface FakeConn {
  id: number;
  remoteAddress: string;
  /** every chunk as it arrived (to see what one write carried) */
  chunks: Buffer[];
  /** command lines in arrival order; AUTH lines are recorded as just `AUTH` */
  commands: string[];
  /** the verbs of the commands that arrived in one chunk, a group per chunk that had any */
  batches: string[][];
  messages: number;
  closed: boolean;
  socket: net.Socket;
}

/** A reply line (or lines joined by CRLF); 'drop' destroys the socket, 'silent' sends nothing. */
export type Reply = string | 'drop' | 'silent' | undefined;

export interface FakeSmtpOptions {
  /** null: never greet */
  greeting?: string | null;
  /** EHLO keywords (default PIPELINING, SIZE, 8BITMIME, AUTH PLAIN XOAUTH2) */
  caps?: string[];
  /**
   * reply to a well-formed AUTH PLAIN or XOAUTH2 with an initial response (default 235); a pair
   * answers the command and then the client's next line
   */
  auth?: (user: string, secret: string, conn: FakeConn, mechanism: string) => string | [string, string];
  /** override the reply to any command line */
  onCommand?: (line: string, conn: FakeConn) => Reply | Promise<Reply>;
  /** reply to the end of a message body; `k` counts the messages of all connections from 0 */
  onMessage?: (m: StoredMessage, conn: FakeConn, k: number) => Reply | Promise<Reply>;
}

export class FakeSmtpServer {
  port = 0;
  readonly conns: FakeConn[] = [];
  /** messages whose body arrived, whatever the reply */
  readonly received: StoredMessage[] = [];
  /** messages answered 2xx */
  readonly accepted: StoredMessage[] = [];
  /** every AUTH attempt, accepted or not */
  readonly auths: { mechanism: string; user: string }[] = [];
  open = 0;
  maxOpen = 0;
  private server!: net.Server;

  static async start(opts: FakeSmtpOptions = {}): Promise<FakeSmtpServer> {
    const f = new FakeSmtpServer(opts);
    f.server = net.createServer((s) => f.handle(s));
    await new Promise<void>((r) => f.server.listen(0, '127.0.0.1', () => r()));
    f.port = (f.server.address() as net.AddressInfo).port;
    return f;
  }

  private constructor(private readonly opts: FakeSmtpOptions) {}

  close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** all commands of all connections, in arrival order per connection */
  commands(): string[] {
    return this.conns.flatMap((c) => c.commands);
  }

  /** the command groups of all connections (see FakeConn.batches) */
  batches(): string[][] {
    return this.conns.flatMap((c) => c.batches);
  }

  /** the Message-ID header of each accepted message, in the order they were accepted */
  acceptedIds(): string[] {
    return this.accepted.map(
      (m) => /^Message-ID: (.*)$/im.exec(m.data.toString('latin1'))?.[1]?.trim() ?? '',
    );
  }

  private handle(socket: net.Socket): void {
    const conn: FakeConn = {
      id: this.conns.length,
      remoteAddress: socket.remoteAddress ?? '',
      chunks: [],
      commands: [],
      batches: [],
      messages: 0,
      closed: false,
      socket,
    };
    this.conns.push(conn);
    this.open++;
    this.maxOpen = Math.max(this.maxOpen, this.open);
    socket.on('error', () => {});
    socket.on('close', () => {
      conn.closed = true;
      this.open--;
    });
    let buf = '';
    // where each chunk ends and how much of the stream is parsed (latin1: a char is a byte), so a
    // command can be put in the batch of the chunk that completed it
    const chunkEnds: number[] = [];
    let parsed = 0;
    let chunk = 0;
    let lastBatchChunk = -1;
    const batch = (verb: string) => {
      while (chunkEnds[chunk]! < parsed) chunk++;
      if (chunk !== lastBatchChunk) {
        conn.batches.push([]);
        lastBatchChunk = chunk;
      }
      conn.batches.at(-1)!.push(verb);
    };
    let mode: 'cmd' | 'data' | 'bdat' = 'cmd';
    /** the BDAT chunk being read: octets still to come, LAST, the onCommand answer to give after it */
    let bdat: { left: number; last: boolean; over: Reply } | null = null;
    let chunked = '';
    let pendingAuth: string | null = null;
    let from = '';
    let to: string[] = [];
    let running = false;
    // The replies to what one chunk carried go out in one write, as a pipelining server's do (a
    // write per reply would meet Nagle's algorithm and the client's delayed ACK: 40 ms stalls).
    let out = '';
    const send = (r: string) => {
      out += r + '\r\n';
    };
    const flush = () => {
      if (out && !socket.destroyed) socket.write(out);
      out = '';
    };
    /** a hook's answer; what is due goes out first when the hook takes its time */
    const answer = async <T>(r: T | Promise<T>): Promise<T> => {
      if (!(r instanceof Promise)) return r;
      flush();
      return r;
    };
    const act = (r: Reply, dflt: string): string | null => {
      const reply = r ?? dflt;
      if (reply === 'drop') {
        flush();
        socket.destroy();
        return null;
      }
      if (reply !== 'silent') send(reply);
      return reply;
    };
    const pump = async () => {
      if (running) return;
      running = true;
      try {
        while (!socket.destroyed) {
          if (mode === 'bdat') {
            const c = bdat!;
            const n = Math.min(c.left, buf.length);
            chunked += buf.slice(0, n);
            buf = buf.slice(n);
            parsed += n;
            c.left -= n;
            if (c.left > 0) break;
            mode = 'cmd';
            bdat = null;
            if (c.over !== undefined || !to.length || !c.last) {
              const dflt = !to.length ? '554 5.5.1 No valid recipients' : '250 2.0.0 chunk received';
              if (act(c.over, dflt) === null) break;
              continue;
            }
            const m: StoredMessage = { from, to, data: Buffer.from(chunked, 'latin1') };
            chunked = '';
            const k = this.received.push(m) - 1;
            conn.messages++;
            const r = act(await answer(this.opts.onMessage?.(m, conn, k)), '250 2.0.0 OK queued as 123');
            if (r && r.startsWith('2')) this.accepted.push(m);
            from = '';
            to = [];
            continue;
          }
          if (mode === 'data') {
            const acc = '\r\n' + buf;
            const end = acc.indexOf('\r\n.\r\n');
            if (end < 0) break;
            const raw = acc.slice(2, end + 2);
            buf = acc.slice(end + 5);
            parsed += end + 3;
            mode = 'cmd';
            const body = raw
              .split('\r\n')
              .map((l) => (l.startsWith('.') ? l.slice(1) : l))
              .join('\r\n');
            const m: StoredMessage = { from, to, data: Buffer.from(body, 'latin1') };
            const k = this.received.push(m) - 1;
            conn.messages++;
            const r = act(await answer(this.opts.onMessage?.(m, conn, k)), '250 2.0.0 OK queued as 123');
            if (r && r.startsWith('2')) this.accepted.push(m);
            from = '';
            to = [];
            continue;
          }
          const nl = buf.indexOf('\r\n');
          if (nl < 0) break;
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 2);
          parsed += nl + 2;
          conn.commands.push(line.startsWith('AUTH ') ? 'AUTH' : line);
          if (pendingAuth !== null) {
            send(pendingAuth);
            pendingAuth = null;
            continue;
          }
          const verb = line.split(/[\s:]/)[0]!.toUpperCase();
          batch(verb);
          const over = await answer(this.opts.onCommand?.(line, conn));
          let dflt: string;
          switch (verb) {
            case 'EHLO': {
              const caps = this.opts.caps ?? [
                'PIPELINING',
                'SIZE 10485760',
                '8BITMIME',
                'AUTH PLAIN XOAUTH2',
              ];
              dflt = ['fake.test greets you', ...caps]
                .map((l, i, a) => `250${i < a.length - 1 ? '-' : ' '}${l}`)
                .join('\r\n');
              break;
            }
            case 'AUTH': {
              const [, mechanism = '', initial = ''] = line.split(' ');
              const cred = credentials(mechanism.toUpperCase(), initial);
              if (cred) this.auths.push({ mechanism: mechanism.toUpperCase(), user: cred.user });
              const r = cred
                ? (this.opts.auth?.(cred.user, cred.secret, conn, mechanism.toUpperCase()) ??
                  '235 2.7.0 Accepted')
                : `501 5.5.2 Malformed ${mechanism}`;
              if (Array.isArray(r)) {
                pendingAuth = r[1];
                dflt = r[0];
              } else dflt = r;
              break;
            }
            case 'MAIL':
              dflt = '250 2.1.0 OK';
              break;
            case 'RCPT':
              dflt = '250 2.1.5 OK';
              break;
            case 'DATA':
              dflt =
                to.length || (over && over.startsWith('2'))
                  ? '354 Go ahead'
                  : '554 5.5.1 No valid recipients';
              break;
            case 'BDAT': {
              const m = /^BDAT (\d+)( LAST)?$/i.exec(line);
              if (!m) {
                dflt = '501 5.5.4 Bad BDAT';
                break;
              }
              bdat = { left: Number(m[1]), last: m[2] !== undefined, over };
              mode = 'bdat';
              continue; // answered after its octets
            }
            case 'RSET':
            case 'NOOP':
              dflt = '250 2.0.0 OK';
              break;
            case 'QUIT':
              dflt = '221 2.0.0 Bye';
              break;
            default:
              dflt = '502 5.5.2 Unknown command';
          }
          const r = act(over, dflt);
          if (r === null) break;
          if (verb === 'MAIL' && r.startsWith('2')) from = /<([^>]*)>/.exec(line)?.[1] ?? '';
          if (verb === 'RCPT' && r.startsWith('2')) to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          if (verb === 'DATA' && r.startsWith('354')) mode = 'data';
          if (verb === 'RSET') {
            from = '';
            to = [];
            chunked = '';
          }
          if (verb === 'QUIT') {
            flush();
            socket.end();
          }
        }
      } finally {
        flush();
        running = false;
      }
      // bytes may have arrived while a hook was awaited
      if (
        !socket.destroyed &&
        buf.length &&
        (mode === 'data' ? ('\r\n' + buf).includes('\r\n.\r\n') : mode === 'bdat' || buf.includes('\r\n'))
      )
        void pump();
    };
    socket.on('data', (data: Buffer) => {
      conn.chunks.push(data);
      chunkEnds.push((chunkEnds.at(-1) ?? 0) + data.length);
      buf += data.toString('latin1');
      void pump();
    });
    if (this.opts.greeting !== null) {
      send(this.opts.greeting ?? '220 fake.test ESMTP ready');
      flush();
    }
  }
}

/** user and password/token of an AUTH PLAIN or XOAUTH2 initial response; undefined if malformed */
function credentials(mechanism: string, initial: string): { user: string; secret: string } | undefined {
  const decoded = Buffer.from(initial, 'base64').toString();
  if (mechanism === 'PLAIN') {
    const f = decoded.split('\0');
    return f.length === 3 ? { user: f[1]!, secret: f[2]! } : undefined;
  }
  if (mechanism === 'XOAUTH2') {
    const f = decoded.split('\x01');
    const wellFormed =
      f.length === 4 &&
      f[0]!.startsWith('user=') &&
      f[1]!.startsWith('auth=Bearer ') &&
      f[2] === '' &&
      f[3] === '';
    return wellFormed ? { user: f[0]!.slice(5), secret: f[1]!.slice(12) } : undefined;
  }
  return undefined;
}
