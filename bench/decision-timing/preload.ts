/**
 * `node --import <this> dist/src/cli/main.js serve ...`: the real `vnum serve`
 * with its routing decisions timed (bench/routing.ts). Registers hooks.ts,
 * which hands serve.js a router wrapped by service.ts; nothing else of the
 * process changes.
 */
import { register } from 'node:module';

register('./hooks.js', import.meta.url);
