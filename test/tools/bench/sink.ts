// A raw SMTP sink for generator tests: speaks just enough ESMTP (PIPELINING, SIZE, AUTH PLAIN and
// XOAUTH2), records every command batch as it arrived and the Message-ID of every stored message.
import net from 'node:net';

export interface SinkOptions {
  /** final reply for message number k (0-based, in arrival order); default 250 */
  finalReply?: (k: number) => string;
  /** when message k arrives, hold every final reply until this many ms have passed */
  stall?: { atMessage: number; ms: number };
  /** close the connection instead of answering message k (not stored) */
  dropAt?: number;
  /** AUTH passwords/tokens accepted (default: anything) */
  accept?: (user: string, secret: string) => boolean;
}

export interface Sink {
  port: number;
  /** Message-IDs of messages answered 2xx */
  ids: string[];
  /** all messages whose DATA ended (whatever the reply) */
  received: number;
  /** commands that arrived in the same data event as a MAIL command, e.g. ["MAIL","RCPT","DATA"] */
  batches: string[][];
  auths: { mechanism: string; user: string }[];
  connections: number;
  close(): Promise<void>;
}

export async function startSink(o: SinkOptions = {}): Promise<Sink> {
  let stallUntil = 0;
  const sockets = new Set<net.Socket>();
  const sink: Sink = {
    port: 0,
    ids: [],
    received: 0,
    batches: [],
    auths: [],
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    sink.connections++;
    socket.write('220 sink ESMTP\r\n');
    let buf = '';
    let inData = false;
    let data = '';
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      const batch: string[] = [];
      let out = '';
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) {
            data += buf;
            buf = '';
            break;
          }
          data += buf.slice(0, end + 2);
          buf = buf.slice(end + 5);
          inData = false;
          const k = sink.received++;
          const id = /^Message-ID: (.*)$/im.exec(data)?.[1]?.trim() ?? '';
          data = '';
          if (k === o.dropAt) {
            socket.destroy();
            return;
          }
          if (o.stall && k === o.stall.atMessage) stallUntil = Date.now() + o.stall.ms;
          const reply = o.finalReply?.(k) ?? '250 2.0.0 OK queued';
          const send = () => {
            if (reply.startsWith('2')) sink.ids.push(id);
            socket.write(reply + '\r\n');
          };
          const wait = stallUntil - Date.now();
          // Replies stay in order: once stalled, every later reply waits for the same moment.
          if (wait > 0) setTimeout(send, wait);
          else send();
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) break;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const verb = line.split(' ')[0]!.toUpperCase();
        batch.push(verb);
        switch (verb) {
          case 'EHLO':
            out += '250-sink\r\n250-PIPELINING\r\n250-SIZE 36700160\r\n250 AUTH PLAIN XOAUTH2\r\n';
            break;
          case 'AUTH': {
            const [, mech = '', initial = ''] = line.split(' ');
            const decoded = Buffer.from(initial, 'base64').toString('utf8');
            let user = '';
            let secret = '';
            if (mech.toUpperCase() === 'PLAIN') [, user = '', secret = ''] = decoded.split('\0');
            else {
              const fields = decoded.split('\x01');
              user = fields.find((x) => x.startsWith('user='))?.slice(5) ?? '';
              secret = fields.find((x) => x.startsWith('auth=Bearer '))?.slice(12) ?? '';
            }
            sink.auths.push({ mechanism: mech.toUpperCase(), user });
            out += (o.accept?.(user, secret) ?? true) ? '235 2.7.0 ok\r\n' : '535 5.7.8 no\r\n';
            break;
          }
          case 'MAIL':
          case 'RCPT':
          case 'RSET':
            out += '250 2.1.0 OK\r\n';
            break;
          case 'DATA':
            out += '354 go ahead\r\n';
            inData = true;
            break;
          case 'QUIT':
            out += '221 bye\r\n';
            break;
          default:
            out += '502 5.5.1 unknown\r\n';
        }
        if (inData) {
          // replies so far must go out before the data arrives
          socket.write(out);
          out = '';
        }
        if (verb === 'QUIT') {
          socket.end(out);
          out = '';
          return;
        }
      }
      if (batch.includes('MAIL')) sink.batches.push(batch);
      if (out) socket.write(out);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sink.port = (server.address() as net.AddressInfo).port;
  return sink;
}
