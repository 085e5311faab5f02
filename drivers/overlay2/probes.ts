// Kernel probes overlay2 runs at init, as moby does (overlayutils.SupportsOverlay,
// doesSupportNativeDiff): real test mounts in a scratch dir under the home.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sys from '../../sys/syscalls.ts';

function scratch<T>(home: string, prefix: string, fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(home, prefix));
  try {
    return fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function mountOverlay(merged: string, data: string, fn: () => void): void {
  sys.mount('overlay', merged, 'overlay', 0, data);
  try {
    fn();
  } finally {
    sys.umount2(merged, sys.MNT_DETACH);
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
 * moby doesSupportNativeDiff: the native diff reads the upper dir directly,
 * which is only right when the kernel neither copies the opaque flag up
 * (kernels < 4.8) nor records directory renames as redirects
 * (CONFIG_OVERLAY_FS_REDIRECT_DIR): either would leave changes the tar
 * conversion cannot express.
 */
export function probeNativeDiff(home: string): { native: boolean; reason: string } {
  return scratch(home, 'opaque-bug-check', (d) => {
    const p = (n: string) => path.join(d, n);
    for (const n of ['l1', 'l2', 'l3', 'work', 'merged']) fs.mkdirSync(p(n));
    fs.mkdirSync(p('l1/d'));
    fs.mkdirSync(p('l1/d1'));
    fs.mkdirSync(p('l2/d'));
    sys.lsetxattr(p('l2/d'), 'trusted.overlay.opaque', Buffer.from('y'));
    let result = { native: true, reason: '' };
    mountOverlay(p('merged'), `lowerdir=${p('l2')}:${p('l1')},upperdir=${p('l3')},workdir=${p('work')}`, () => {
      fs.writeFileSync(p('merged/d/f'), '');
      if (sys.lgetxattr(p('l3/d'), 'trusted.overlay.opaque')?.toString() === 'y') {
        result = { native: false, reason: 'opaque flag erroneously copied up, consider update to kernel 4.8 or later to fix' };
        return;
      }
      try {
        fs.renameSync(p('merged/d1'), p('merged/d2'));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EXDEV') return; // redirect_dir off: native diff is safe
        throw e;
      }
      if (sys.lgetxattr(p('l3/d2'), 'trusted.overlay.redirect') !== null) {
        result = { native: false, reason: 'kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR enabled' };
      }
    });
    return result;
  });
}
