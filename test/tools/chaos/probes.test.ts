// The chaos probes on their own: the proxy's TCP sockets told apart by port, and /readyz polls
// that tell a late answer from a failed one.
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { pollReady, tcpSockets } from '../../../src/tools/chaos/probes.js';
import { sleep, until } from '../../helpers/wait.js';

const servers: { close(): unknown }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

describe('tcpSockets', () => {
  it("finds this process's connection to a port, both ends, and loses it once closed", async () => {
    const accepted: net.Socket[] = [];
    const port = await listen(net.createServer((s) => accepted.push(s)));
    const c = net.connect(port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    await until(() => accepted.length === 1);
    const mine = await tcpSockets(process.pid);
    expect(mine.filter((s) => s.remote === port)).toEqual([{ local: c.localPort, remote: port }]);
    expect(mine.filter((s) => s.local === port && s.remote === c.localPort)).toHaveLength(1);
    c.destroy();
    accepted[0]!.destroy();
    await sleep(50);
    expect((await tcpSockets(process.pid)).filter((s) => s.remote === port)).toEqual([]);
  });
});

describe('pollReady', () => {
  it('counts a 503 and a refused connection as not ready, and a late 200 as slow but ready', async () => {
    let n = 0;
    const port = await listen(
      http.createServer((_req, res) => {
        n++;
        if (n === 2) return void res.writeHead(503).end();
        if (n === 3) return void setTimeout(() => res.writeHead(200).end(), 2500); // past the first 2 s
        res.writeHead(200).end();
      }),
    );
    const ready = pollReady(port, 50);
    // the 6th request is the 5th poll: by then the 4th poll (after the slow one) has been counted
    await until(() => n >= 6, 8000);
    const r = ready.stop();
    expect(r.notReady).toBe(1);
    expect(r.why).toEqual({ '503': 1 });
    expect(r.slow).toBe(1);
    expect(r.polls).toBeGreaterThanOrEqual(4);

    const closed = await listen(net.createServer());
    servers.pop()!.close();
    await sleep(50);
    const down = pollReady(closed, 50);
    await sleep(300);
    const d = down.stop();
    expect(d.notReady).toBe(d.polls);
    expect(Object.keys(d.why)).toEqual(['ECONNREFUSED']);
  });
});
