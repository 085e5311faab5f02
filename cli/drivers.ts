// strata drivers: which of the six graphdrivers can run on this host, and
// why not. Each implemented driver is really initialised in a scratch
// directory inside --root (so its backing filesystem is the real one), then
// removed: nothing is left in --root.
import type { CommandModule } from 'yargs';
import * as path from 'node:path';
import { emit, table } from './output.ts';

interface DriversArgs {
  json: boolean;
  root: string;
}

export const driversCommand: CommandModule<{ json: boolean }, DriversArgs> = {
  command: 'drivers',
  describe: 'list the storage drivers (aufs, overlay, overlay2, btrfs, devicemapper, vfs) usable on this host, with reasons',
  builder: (y) =>
    y.option('root', { type: 'string', default: '/var/lib/docker', describe: 'Docker data root the driver homes would live in' }),
  handler: async (argv) => {
    // loaded on use, so that other commands start without the drivers
    await import('../drivers/all.ts');
    const { probeDrivers } = await import('../drivers/registry.ts');
    const { holdsData } = await import('../drivers/layout.ts');
    const probes = await probeDrivers(argv.root);
    const rows = probes.map((p) => ({ ...p, data: holdsData(path.join(argv.root, p.name)) }));
    emit(argv.json, rows, () => {
      process.stdout.write(table(['DRIVER', 'USABLE', 'DATA IN ROOT', 'REASON'],
        rows.map((r) => [r.name, r.usable ? 'yes' : 'no', r.data ? path.join(argv.root, r.name) : '-', r.reason])));
    });
  },
};
