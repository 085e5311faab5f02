// Features a driver probes for (an overlay test mount, the native-diff
// check), each run once on first need and remembered, success or failure.
//
// Why lazy: a probe needs a healthy backing filesystem (scratch dirs, test
// mounts under the home). On a full disk it fails, and if init required it,
// nothing could be done with the home at all — not even removing the layer
// that filled it. So the operations that need a feature ask for it, and the
// ones that do not (remove, put, listing, metadata) never run its probe.
// Drivers opened to *use* a home (selection, a new home) still probe at init,
// so auto-selection can skip a driver this host cannot run.
import { NotSupportedError } from './driver.ts';

/**
 * A probe failed: the driver cannot do what needs this feature here. It is a
 * NotSupportedError (auto-selection skips the driver, as moby does), whose
 * message says which probe, where, and the real reason (errno and all).
 */
export class ProbeError extends NotSupportedError {
  constructor(driver: string, what: string, home: string, reason: string) {
    super(`${driver}: ${what} probe in ${home} failed: ${reason}`);
    this.name = 'ProbeError';
  }
}

/** One probed feature: `probe` runs on the first get(); its value or its error is kept. */
export class Feature<T> {
  private outcome: { value: T } | { error: Error } | undefined;

  /**
   * @param probe returns the feature's value; what it throws (a NotSupportedError,
   *   or any error of the probe itself, e.g. ENOSPC making its scratch dir)
   *   becomes the feature's failure: a ProbeError naming `what` and `home`
   */
  constructor(
    private readonly driver: string,
    private readonly what: string,
    private readonly home: string,
    private readonly probe: () => T,
  ) {}

  /** A feature whose value is known without a probe (forced by an option, or given by a caller that read it elsewhere). */
  static known<T>(driver: string, what: string, home: string, value: T): Feature<T> {
    const f = new Feature<T>(driver, what, home, () => value);
    f.get();
    return f;
  }

  /** The feature's value; throws the probe's failure (every time, the same one). */
  get(): T {
    if (this.outcome === undefined) {
      try {
        this.outcome = { value: this.probe() };
      } catch (e) {
        this.outcome = { error: this.failure(e) };
      }
    }
    if ('error' in this.outcome) throw this.outcome.error;
    return this.outcome.value;
  }

  /** The value, or the failure's message, without throwing (for status()). */
  describe(show: (v: T) => string): string {
    try {
      return show(this.get());
    } catch (e) {
      return (e as Error).message;
    }
  }

  private failure(e: unknown): Error {
    if (e instanceof ProbeError) return e;
    // moby's own refusals (d_type) already say what and why: kept as they are
    if (e instanceof NotSupportedError && e.detail === undefined && e.message.startsWith(`${this.driver}:`)) return e;
    const err = e as Error;
    const reason = e instanceof NotSupportedError && e.detail ? e.detail : err.message;
    return new ProbeError(this.driver, this.what, this.home, reason);
  }
}
