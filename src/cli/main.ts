#!/usr/bin/env node
// The installed `syncpi` binary: everything lives in program.ts so tests can run it in-process.
import { main } from './program.js';

process.exitCode = await main(process.argv);
