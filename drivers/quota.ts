// Project quotas for layer directories (moby's quota.Control): a directory
// gets a fresh project id with the inherit flag (FS_IOC_FSSETXATTR), and
// xfs_quota sets its hard block limit. Needs the backing fs mounted with
// project quota enforcement (xfs prjquota/pquota, ext4 prjquota).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { mountFor, type MountInfo } from '../sys/mountinfo.ts';
import { findTool } from '../sys/find-tool.ts';
import * as sys from '../sys/syscalls.ts';

// struct fsxattr { u32 xflags, extsize, nextents, projid, cowextsize; u8 pad[8] } = 28 bytes
const FSXATTR_SIZE = 28;
const FS_IOC_FSGETXATTR = 0x801c581f; // _IOR('X', 31, struct fsxattr)
const FS_IOC_FSSETXATTR = 0x401c5820; // _IOW('X', 32, struct fsxattr)
const FS_XFLAG_PROJINHERIT = 0x200;

export class ProjectQuota {
  private constructor(
    private readonly mount: MountInfo,
    private readonly xfsQuota: string,
    private readonly home: string,
    private readonly layerDirs: (home: string) => string[],
  ) {}

  /**
   * A control for `home`'s filesystem, or the reason there can be none.
   * `layerDirs` lists the directories that already hold project ids, so a
   * new one can be chosen above them.
   */
  static detect(home: string, layerDirs: (home: string) => string[]): ProjectQuota | string {
    const m = mountFor(home);
    if (!m) return `no mount found for ${home}`;
    const enforced = m.superOptions.some((o) => o === 'prjquota' || o === 'pquota' || o === 'prjjquota');
    if (!enforced) {
      return `${m.mountPoint} (${m.fstype}) is not mounted with project quota enforcement (prjquota/pquota)`;
    }
    if (m.fstype !== 'xfs' && m.fstype !== 'ext4') return `project quotas on ${m.fstype} are not supported`;
    const tool = findTool('xfs_quota');
    if (!tool) return 'xfs_quota (xfsprogs) is not installed: it is needed to set project quota limits';
    return new ProjectQuota(m, tool, home, layerDirs);
  }

  /** Give `dir` (empty, just created) a new project id and a hard block limit of `bytes`. */
  setQuota(dir: string, bytes: number): void {
    const id = this.nextProjectId();
    const fd = fs.openSync(dir, 'r');
    try {
      const attr = Buffer.alloc(FSXATTR_SIZE);
      sys.ioctl(fd, FS_IOC_FSGETXATTR, attr, dir);
      attr.writeUInt32LE(attr.readUInt32LE(0) | FS_XFLAG_PROJINHERIT, 0);
      attr.writeUInt32LE(id, 12);
      sys.ioctl(fd, FS_IOC_FSSETXATTR, attr, dir);
    } finally {
      fs.closeSync(fd);
    }
    const args = ['-x', ...(this.mount.fstype === 'xfs' ? [] : ['-f']), '-c', `limit -p bhard=${bytes} ${id}`, this.mount.mountPoint];
    try {
      execFileSync(this.xfsQuota, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: Buffer; message: string };
      throw new Error(`setting a ${bytes}-byte project quota on ${dir}: xfs_quota: ${err.stderr?.toString().trim() || err.message}`);
    }
  }

  /** One above the highest project id in use below the home (moby starts above the home's own id). */
  private nextProjectId(): number {
    let max = projectId(this.home);
    for (const d of this.layerDirs(this.home)) max = Math.max(max, projectId(d));
    return max + 1;
  }
}

function projectId(p: string): number {
  const fd = fs.openSync(p, 'r');
  try {
    const attr = Buffer.alloc(FSXATTR_SIZE);
    sys.ioctl(fd, FS_IOC_FSGETXATTR, attr, p);
    return attr.readUInt32LE(12);
  } finally {
    fs.closeSync(fd);
  }
}
