#!/usr/bin/env node
// xoauth2-proxy command line (README, "Commands").
import { Command } from 'commander';
import { createRequire } from 'node:module';
import { registerConfigCommands } from './commands/check.js';
import { registerSimulateCommand } from './tools/sim/index.js';
import { registerBenchCommand } from './tools/bench/command.js';
import { registerAccountsCommands } from './commands/accounts.js';
import { registerServeCommand } from './commands/serve.js';
import { registerDemoCommand } from './tools/demo/demo.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

const program = new Command();
program
  .name('xoauth2-proxy')
  .description('SMTP relay: password-only SMTP clients in, XOAUTH2 to Gmail / Microsoft 365 out')
  .version(pkg.version)
  .showHelpAfterError();

registerServeCommand(program);
registerConfigCommands(program);
registerSimulateCommand(program);
registerDemoCommand(program);
registerBenchCommand(program);
registerAccountsCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`xoauth2-proxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
