#!/usr/bin/env node
import { once } from 'node:events';
import { createInterface } from 'node:readline/promises';
import { readEnv } from './config/env.js';
import { runCli } from './cli/run-cli.js';

/** The process entry: the only place that reads argv and the environment and sets the exit code. */
const exitCode = await runCli(process.argv.slice(2), {
  env: readEnv(),
  stdout: (line) => console.log(line),
  stderr: (line) => console.error(line),
  stdoutIsTty: process.stdout.isTTY === true,
  confirm:
    process.stdin.isTTY === true && process.stderr.isTTY === true
      ? async (question) => {
          const terminal = createInterface({ input: process.stdin, output: process.stderr });
          try {
            return /^y(es)?$/i.test((await terminal.question(question)).trim());
          } finally {
            terminal.close();
          }
        }
      : undefined,
  stopSignal: () =>
    Promise.race(
      [once(process, 'SIGTERM'), once(process, 'SIGINT')].map((p, i) =>
        p.then(() => (i === 0 ? 'SIGTERM' : 'SIGINT')),
      ),
    ),
});
process.exitCode = exitCode;
