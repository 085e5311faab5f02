#!/usr/bin/env node
// The published entry point: load the TypeScript CLI through tsx's ESM hooks.
import { register } from 'tsx/esm/api';
register();
await import('../cli/main.ts');
