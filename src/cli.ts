#!/usr/bin/env node
// xoauth2-proxy command line (SPEC section 1).
import { Command } from 'commander';
import { createRequire } from 'node:module';
import { registerConfigCommands } from './config/commands.js';
import { registerSimulateCommand } from './sim/index.js';
import { registerBenchCommand } from './bench/command.js';
import { registerAccountsCommands } from './accounts/commands.js';
import { registerServeCommand } from './serve.js';
import { registerDemoCommand } from './demo.js';

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
