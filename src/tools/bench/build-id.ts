// Which build a benchmark measured: the git commit of the checkout the proxy's dist/cli.js sits in,
// so a page of figures says what code it describes (the date alone does not).
import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** "abc1234", or "abc1234 with uncommitted changes" when src/ differs from that commit */
export function describeBuild(commit: string, srcChanged: boolean): string {
  return srcChanged ? `${commit} with uncommitted changes` : commit;
}

/** the build of the checkout `cli` is in; undefined outside a git checkout (an npm install) */
export function buildOf(cli: string): string | undefined {
  const dir = path.dirname(cli);
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', dir, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  try {
    const commit = git('rev-parse', '--short', 'HEAD');
    const top = git('rev-parse', '--show-toplevel');
    const changed = git('status', '--porcelain', '--untracked-files=no', '--', path.join(top, 'src')) !== '';
    return describeBuild(commit, changed);
  } catch {
    return undefined;
  }
}
