// Run one of the built tools (dist/*/cli.js) as a child process and collect its output.
import { spawn } from 'node:child_process';

export async function runScript(file: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  return { code, out };
}
