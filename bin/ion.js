#!/usr/bin/env node
// Runs the TypeScript sources through tsx in a checkout; the compiled build when installed
// from a package (no src/).
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
