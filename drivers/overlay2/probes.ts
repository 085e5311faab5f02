// Kernel probes of the overlay drivers, as moby's (overlayutils.SupportsOverlay,
// doesSupportNativeDiff): real test mounts in a scratch dir under the home
// (drivers/scratch.ts names it after its holder). The drivers run them
// through drivers/feature.ts: at init when opened to use a home, on first
// need when opened to manage an existing one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../sys/syscalls.ts';
import { runningInUserNS } from '../../sys/userns.ts';
import { backingFsName } from '../backing-fs.ts';
import { mount, overlaySpec, unmount } from '../mounter.ts';
import { withScratch as scratch } from '../scratch.ts';

/** The scratch-dir prefixes of these probes (and moby's), which init removes when their holder is gone. */
export const PROBE_PREFIXES = ['check-overlayfs-support', 'userxattr-check', 'opaque-bug-check', 'metacopy-check'] as const;

/**
 * `index=off,` where the kernel has the parameter (as moby's overlay2 mounts;
 * both overlay drivers pass it), so a lower shared by two mounts is not refused.
 */
export function indexOffPrefix(): string {
  return fs.existsSync('/sys/module/overlay/parameters/index') ? 'index=off,' : '';
}

function mountOverlay(merged: string, data: string, fn: () => void): void {
  mount(merged, overlaySpec(data));
  try {
    fn();
  } finally {
    unmount(merged, { keepDir: true });
  }
}

/** Can this kernel mount overlay with two lowers here? true, or the reason it cannot. */
export function probeOverlay(home: string): true | string {
  if (!fs.readFileSync('/proc/filesystems', 'utf8').split('\n').some((l) => l.endsWith('\toverlay'))) {
    return "'overlay' is not in /proc/filesystems (no overlay module)";
  }
  try {
    return scratch(home, 'check-overlayfs-support', (d) => {
      for (const n of ['lower1', 'lower2', 'upper', 'work', 'merged']) fs.mkdirSync(path.join(d, n));
      mountOverlay(path.join(d, 'merged'),
        `lowerdir=${d}/lower2:${d}/lower1,upperdir=${d}/upper,workdir=${d}/work`, () => undefined);
      return true as const;
    });
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * moby NeedsUserXAttr: overlayfs must be mounted with `userxattr` (and keeps its
 * bookkeeping in user.overlay.* instead of trusted.*) when we run in a user
 * namespace, except on tmpfs. moby trusts the kernel version on >= 5.11; we
 * always make the test mount.
 */
export function probeUserXattr(home: string): { userxattr: boolean; reason: string } {
  if (!runningInUserNS()) return { userxattr: false, reason: 'not in a user namespace' };
  // moby's rule, from before tmpfs took user.* xattrs (Linux 6.6)
  if (backingFsName(home) === 'tmpfs') return { userxattr: false, reason: 'on tmpfs (moby never uses userxattr there)' };
  return scratch(home, 'userxattr-check', (d) => {
    for (const n of ['lower1', 'lower2', 'upper', 'work', 'merged']) fs.mkdirSync(path.join(d, n));
    try {
      mountOverlay(path.join(d, 'merged'), `lowerdir=${d}/lower2:${d}/lower1,upperdir=${d}/upper,workdir=${d}/work,userxattr`, () => undefined);
      return { userxattr: true, reason: '' };
    } catch (e) {
      return { userxattr: false, reason: `test mount with userxattr failed: ${(e as Error).message}` };
    }
  });
}

/**
 * moby doesSupportNativeDiff: the native diff reads the upper dir directly,
 * which is only right when the kernel neither copies the opaque flag up
 * (kernels < 4.8) nor records directory renames as redirects
 * (CONFIG_OVERLAY_FS_REDIRECT_DIR): either would leave changes the tar
 * conversion cannot express. moby gives up on the native diff in a user
 * namespace; with `userxattr` the same probe works on user.overlay.* (as
 * containers/storage does), so the native paths stay available there.
 */
export function probeNativeDiff(home: string, userxattr = false): { native: boolean; reason: string } {
  const ns = userxattr ? 'user.overlay.' : 'trusted.overlay.';
  return scratch(home, 'opaque-bug-check', (d) => {
    const p = (n: string) => path.join(d, n);
    for (const n of ['l1', 'l2', 'l3', 'work', 'merged']) fs.mkdirSync(p(n));
    fs.mkdirSync(p('l1/d'));
    fs.mkdirSync(p('l1/d1'));
    fs.mkdirSync(p('l2/d'));
    try {
      sys.lsetxattr(p('l2/d'), `${ns}opaque`, Buffer.from('y'));
    } catch (e) {
      // e.g. trusted.* in a user namespace on a kernel without userxattr
      return { native: false, reason: `failed to set opaque flag on middle layer: ${(e as Error).message}` };
    }
    let result = { native: true, reason: '' };
    const data = `lowerdir=${p('l2')}:${p('l1')},upperdir=${p('l3')},workdir=${p('work')}${userxattr ? ',userxattr' : ''}`;
    mountOverlay(p('merged'), data, () => {
      fs.writeFileSync(p('merged/d/f'), '');
      if (sys.lgetxattr(p('l3/d'), `${ns}opaque`)?.toString() === 'y') {
        result = { native: false, reason: 'opaque flag erroneously copied up, consider update to kernel 4.8 or later to fix' };
        return;
      }
      try {
        fs.renameSync(p('merged/d1'), p('merged/d2'));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EXDEV') return; // redirect_dir off: native diff is safe
        throw e;
      }
      if (sys.lgetxattr(p('l3/d2'), `${ns}redirect`) !== null) {
        result = { native: false, reason: 'kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR enabled' };
      }
    });
    return result;
  });
}
