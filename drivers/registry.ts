// Driver registry and selection, as the Docker daemon does it (moby v23
// graphdriver.New): drivers register an init function under their name;
// selection takes an explicit name strictly, else the prior state found
// under the root, else the first driver in priority order that supports
// this host. Import drivers/all.ts to get every driver registered.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { holdsData } from './layout.ts';
import { isDriverNotSupported, NotSupportedError, errNotSupported, type Driver, type InitFunc, type InitOpts } from './driver.ts';


/**
 * moby v23 Linux priority list, less the drivers strata does not implement
 * at all (fuse-overlayfs, zfs).
 */
export const PRIORITY = ['overlay2', 'btrfs', 'aufs', 'overlay', 'devicemapper', 'vfs'] as const;

/** probeDrivers' scratch roots: `<root>/.strata-probe-<holder>-XXXXXX` (scratch.ts) */
const PROBE_ROOT_PREFIX = '.strata-probe';

/** The six drivers strata knows about (probeDrivers reports each). */
export const KNOWN_DRIVERS = ['aufs', 'overlay', 'overlay2', 'btrfs', 'devicemapper', 'vfs'] as const;

/** moby v23 isDeprecated: never auto-selected; as prior state they stop selection with an error. */
export function isDeprecated(name: string): boolean {
  return name === 'aufs' || name === 'devicemapper' || name === 'overlay';
}

export interface SelectOptions {
  /** configured driver name (`--storage-driver`); empty or undefined = choose */
  name?: string;
  /** driver options (`--storage-opt` for the daemon), passed to the init function */
  options?: string[];
}

export interface DriverProbe {
  name: string;
  usable: boolean;
  /** why not (the driver's own error, with its detail), or '' when usable */
  reason: string;
}

/**
 * A set of registered drivers and the daemon's selection over them. The
 * process-wide one is `drivers` (what register() fills); tests make their own.
 */
export class DriverRegistry {
  private readonly inits = new Map<string, InitFunc>();

  /** Register a driver (moby graphdriver.Register); a second registration of a name is a bug. */
  register(name: string, init: InitFunc): void {
    if (this.inits.has(name)) throw new Error(`graphdriver ${name} is already registered`);
    this.inits.set(name, init);
  }

  /** Names of the registered drivers, sorted. */
  names(): string[] {
    return [...this.inits.keys()].sort();
  }

  has(name: string): boolean {
    return this.inits.has(name);
  }

  /**
   * moby GetDriver: init a registered driver in `<root>/<name>`; an unknown
   * name is `driver not supported`. `opts.mode` says how the home is opened
   * (driver.ts OpenMode; selection and probes always `use` it).
   */
  async getDriver(name: string, root: string, options: string[] = [], opts: InitOpts = {}): Promise<Driver> {
    return this.initOf(name)(path.join(root, name), options, opts);
  }

  /** A registered driver over the existing home `home`, opened `read-only` (driver.ts OpenMode): no probes, no writes. */
  async openReadOnly(name: string, home: string): Promise<Driver> {
    return this.initOf(name)(home, [], { mode: 'read-only' });
  }

  /** The init function of `name`; an unknown name is moby's `driver not supported`. */
  private initOf(name: string): InitFunc {
    const init = this.inits.get(name);
    if (!init) throw errNotSupported(`no driver named ${JSON.stringify(name)} is registered (registered: ${this.names().join(', ') || 'none'})`);
    return init;
  }

  /** moby scanPriorDrivers: registered drivers (except vfs) whose `<root>/<name>` holds data (layout.ts holdsData). */
  scanPriorDrivers(root: string): string[] {
    const found: string[] = [];
    for (const name of this.inits.keys()) {
      if (name === 'vfs') continue;
      if (holdsData(path.join(root, name))) found.push(name);
    }
    return found.sort();
  }

  /**
   * moby graphdriver.New. Explicit name → that driver or its error. Else prior
   * state: the first prior driver in priority order must init (its error is
   * returned as is, so images never silently vanish), must not be deprecated,
   * and must be the only prior driver. Else the priority list, skipping
   * deprecated drivers and those that throw NotSupportedError; then the other
   * registered drivers the same way.
   */
  async selectDriver(root: string, opts: SelectOptions = {}): Promise<Driver> {
    const options = opts.options ?? [];
    if (opts.name) return this.getDriver(opts.name, root, options);

    const prior = this.scanPriorDrivers(root);
    for (const name of PRIORITY) {
      if (!prior.includes(name)) continue;
      const driver = await this.getDriver(name, root, options);
      if (isDeprecated(name)) {
        await driver.cleanup();
        throw new Error(`prior storage driver ${name} is deprecated and will be removed in a future release; update the the daemon configuration and explicitly choose this storage driver to continue using it; visit https://docs.docker.com/go/storage-driver/ for more information`);
      }
      if (prior.length > 1) {
        await driver.cleanup();
        throw new Error(`${root} contains several valid graphdrivers: ${prior.join(', ')}; cleanup or explicitly choose storage driver (-s <DRIVER>)`);
      }
      return driver;
    }

    const others = this.names().filter((n) => !(PRIORITY as readonly string[]).includes(n));
    for (const name of [...PRIORITY.filter((n) => this.inits.has(n)), ...others]) {
      if (isDeprecated(name)) continue;
      try {
        return await this.getDriver(name, root, options);
      } catch (e) {
        if (isDriverNotSupported(e)) continue;
        throw e;
      }
    }
    throw new Error('no supported storage driver found');
  }

  /**
   * For each of the six known drivers: can it run with its home under `root`?
   * Each registered driver is initialised in a scratch directory created inside
   * `root` (or its nearest existing ancestor), so the backing filesystem is the
   * one the real home would have, and nothing is left behind in `root`.
   */
  async probeDrivers(root: string): Promise<DriverProbe[]> {
    // loaded here: scratch dirs need the syscall layer, which the layout table (all.ts) must not load
    const { makeScratch, removeStaleScratch } = await import('./scratch.ts');
    let base = path.resolve(root);
    while (!fs.existsSync(base)) base = path.dirname(base);
    const out: DriverProbe[] = [];
    removeStaleScratch(base, [PROBE_ROOT_PREFIX]); // a killed `strata drivers` leaves its scratch root
    for (const name of KNOWN_DRIVERS) {
      const init = this.inits.get(name);
      if (!init) {
        out.push({ name, usable: false, reason: 'not implemented in this strata version' });
        continue;
      }
      let scratch: string;
      try {
        scratch = makeScratch(base, PROBE_ROOT_PREFIX);
      } catch (e) {
        out.push({ name, usable: false, reason: `cannot create a probe directory in ${base}: ${(e as Error).message}` });
        continue;
      }
      try {
        const driver = await init(path.join(scratch, name), []);
        await driver.cleanup();
        out.push({ name, usable: true, reason: '' });
      } catch (e) {
        const err = e as Error;
        const detail = err instanceof NotSupportedError && err.detail ? ` (${err.detail})` : '';
        out.push({ name, usable: false, reason: err.message + detail });
      } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
      }
    }
    return out;
  }
}

/** The process-wide registry every driver registers itself in. */
export const drivers = new DriverRegistry();
/** Register a driver in the process-wide registry (moby graphdriver.Register). */
export const register = (name: string, init: InitFunc): void => drivers.register(name, init);
export const registeredDrivers = (): string[] => drivers.names();
export const getDriver = (name: string, root: string, options: string[] = [], opts: InitOpts = {}): Promise<Driver> =>
  drivers.getDriver(name, root, options, opts);
export const scanPriorDrivers = (root: string): string[] => drivers.scanPriorDrivers(root);
export const selectDriver = (root: string, opts: SelectOptions = {}): Promise<Driver> => drivers.selectDriver(root, opts);
export const probeDrivers = (root: string): Promise<DriverProbe[]> => drivers.probeDrivers(root);
export const openReadOnly = (name: string, home: string): Promise<Driver> => drivers.openReadOnly(name, home);
