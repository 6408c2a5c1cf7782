#!/usr/bin/env node
import { once } from 'node:events';
import { readEnv } from './config/env.js';
import { runCli } from './cli/run-cli.js';

/** The process entry: the only place that reads argv and the environment and sets the exit code. */
const exitCode = await runCli(process.argv.slice(2), {
  env: readEnv(),
  stdout: (line) => console.log(line),
  stderr: (line) => console.error(line),
  stdoutIsTty: process.stdout.isTTY === true,
  stopSignal: () =>
    Promise.race(
      [once(process, 'SIGTERM'), once(process, 'SIGINT')].map((p, i) =>
        p.then(() => (i === 0 ? 'SIGTERM' : 'SIGINT')),
      ),
    ),
});
process.exitCode = exitCode;
