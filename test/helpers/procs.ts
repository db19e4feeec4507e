// Run the real CLI (dist/cli.js) as child processes: the simulator and the proxy.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import YAML from 'yaml';
import { freePort } from '../../src/tools/harness/ports.js';
import { sleep } from './wait.js';

/** The built tree the tests run: `dist/`, or another build's (`XO_DIST=dist-x`, for parallel work). */
export const DIST = path.resolve(__dirname, '../..', process.env.XO_DIST ?? 'dist');
export const CLI = path.join(DIST, 'cli.js');

export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

function track(child: ChildProcess): Proc {
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface SimProc extends Proc {
  smtpPort: number;
  smtpTlsPort?: number;
  httpPort: number;
  tokenUrl: string;
  caFile: string;
  stats(): Promise<any>;
  control(path: string, body: unknown): Promise<void>;
}

export async function startSim(args: string[] = [], withTls = false): Promise<SimProc> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-sim-'));
  const caFile = path.join(dir, 'ca.pem');
  const full = ['simulate', '--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--ca-out', caFile, ...args];
  if (withTls) full.push('--smtp-tls', '127.0.0.1:0');
  const child = spawn(process.execPath, [CLI, ...full], { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = track(child);
  const rl = readline.createInterface({ input: child.stdout! });
  const info = await new Promise<any>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // not left running behind a failed start
      reject(new Error('simulator did not start: ' + proc.output()));
    }, 15_000);
    rl.on('line', (line) => {
      if (!line.startsWith('{')) return;
      try {
        const j = JSON.parse(line);
        if (j.event === 'listening') {
          clearTimeout(timer);
          resolve(j);
        }
      } catch {}
    });
    child.once('exit', () => reject(new Error('simulator exited: ' + proc.output())));
  });
  const port = (hp: string) => Number(hp.split(':').pop());
  const base = `http://${info.http}`;
  return {
    ...proc,
    smtpPort: port(info.smtp),
    smtpTlsPort: info.smtpTls ? port(info.smtpTls) : undefined,
    httpPort: port(info.http),
    tokenUrl: info.tokenUrl,
    caFile,
    async stats() {
      return (await fetch(base + '/stats')).json();
    },
    async control(p: string, body: unknown) {
      const r = await fetch(base + p, {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { 'content-type': 'application/json' },
      });
      if (!r.ok) throw new Error(`${p}: ${r.status}`);
    },
  };
}

export interface ProxyProc extends Proc {
  dir: string;
  configFile: string;
  smtpPort: number;
  httpPort: number;
  http(p: string, init?: RequestInit): Promise<Response>;
}

/**
 * Write config (an object; smtp.listen and http.listen are filled with free ports, unless it sets
 * http.listen itself, e.g. to name it in http.publicUrl) and start `serve`.
 */
export async function startProxy(
  config: any,
  opts: { dir?: string; env?: Record<string, string> } = {},
): Promise<ProxyProc> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'xo-proxy-'));
  const smtpPort = await freePort();
  const httpPort = config.http?.listen
    ? Number(String(config.http.listen).split(':').pop())
    : await freePort();
  const cfg = {
    ...config,
    smtp: { listen: [`127.0.0.1:${smtpPort}`], hostname: 'proxy.test', ...config.smtp },
    http: { listen: `127.0.0.1:${httpPort}`, ...config.http },
    state: {
      dir: path.join(dir, 'data'),
      secretKey: 'test-secret-key-0123456789-abcdefghijklmnop',
      ...config.state,
    },
  };
  const configFile = path.join(dir, 'xoauth2-proxy.yaml');
  fs.writeFileSync(configFile, YAML.stringify(cfg));
  return runProxy(dir, configFile, smtpPort, httpPort, opts.env);
}

export async function runProxy(
  dir: string,
  configFile: string,
  smtpPort: number,
  httpPort: number,
  env: Record<string, string> = {},
): Promise<ProxyProc> {
  const child = spawn(process.execPath, [CLI, 'serve', '-c', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const proc = track(child);
  const base = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error('proxy exited: ' + proc.output());
    try {
      const r = await fetch(base + '/readyz');
      if (r.status === 200) break;
    } catch {}
    if (Date.now() > deadline) {
      child.kill('SIGKILL'); // not left running behind a failed start
      throw new Error('proxy not ready: ' + proc.output());
    }
    await sleep(100);
  }
  return { ...proc, dir, configFile, smtpPort, httpPort, http: (p, init) => fetch(base + p, init) };
}

export function simProvider(sim: SimProc, extra: Record<string, unknown> = {}) {
  return {
    tokenUrl: sim.tokenUrl,
    scope: 'https://mail.google.com/',
    smtp: { host: '127.0.0.1', port: sim.smtpPort, security: 'none' },
    ...extra,
  };
}
