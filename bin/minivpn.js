#!/usr/bin/env node
// The `minivpn` command. Its code is TypeScript, compiled into dist/: src/cli/main.ts.
'use strict';
const path = require('path');

const entry = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
let cli;
try {
  cli = require(entry);
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(entry)) {
    process.stderr.write(`minivpn: not built yet (${entry} is missing): run "npm ci" in ${path.dirname(__dirname)}\n`);
    process.exit(1);
  }
  throw err;
}
cli.main(process.argv.slice(2));
