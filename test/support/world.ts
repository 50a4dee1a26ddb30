import type { Asterisk } from './asterisk/asterisk.js';
import type { VnumDb } from './cli.js';
import type { Serve } from './serve.js';

/** What an end-to-end suite runs calls through: the real Asterisk, the built router, its database. */
export interface World {
  asterisk: Asterisk;
  db: VnumDb;
  router: Serve;
}

/** Stop the router, then Asterisk, then remove the database (and `also`), whatever fails on the way. */
export async function stopWorld(world: World | undefined, also: () => void = () => {}): Promise<void> {
  if (!world) return;
  try {
    await world.router.stop();
  } finally {
    try {
      await world.asterisk.stop();
    } finally {
      world.db.remove();
      also();
    }
  }
}
