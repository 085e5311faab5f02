// Seeded hostile layer tars for the apply fuzzer: entries over a tiny name
// space (so later entries replace earlier dirs, symlinks, files, hardlinks and
// whiteouts, and reach through them), symlinks and hardlinks aimed at the
// sentinel tree outside the layer, long names (PAX and GNU 'L'), PAX records
// (ns times, atime, xattrs, hostile size/uid/path), then byte-level mutations
// of header fields (octal garbage, base-256 negatives, typeflags) with the
// checksum usually fixed so the mutation reaches the field checks, and cuts.
import { BLOCK, encodeHeader, headerSpace, type EntryType, type TarHeader } from '../../archive/tar-header.ts';
import type { Rng } from './random-layer-ops.ts';
import { fixChecksum } from './tar.ts';

const NAMES = ['a', 'b', 'c', 'a/b', 'a/c', 'b/a', 'a/b/c', 'c/d/e', 'sub', 'sub/x', 'hello', '.wh.a', 'a/.wh.b', '.wh.sub',
  'a/.wh..wh..opq', '.wh..wh..opq', 'sub/.wh..wh..opq', '.wh..wh.plnk/1', '.wh..wh.plnk/2', '.', './a/../b', 'l', 'l/x', 'l/sub/y',
  'x'.repeat(140), 'a/' + 'y'.repeat(180) + '/z', '/abs', 'a/../b/./c'];
/** Names that climb out lexically: refused, so drawn rarely. */
const CLIMBING = ['../esc', 'a/../../esc', '/../esc'];
const TYPES: EntryType[] = ['file', 'file', 'file', 'dir', 'dir', 'dir', 'symlink', 'symlink', 'link', 'char', 'fifo', 'block'];
const MODES = [0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o7777, 0o000, 0o700];
const IDS = [0, 1000, 65534, 0xfffffffe];
const FIELDS: [off: number, len: number][] = [[100, 8], [108, 8], [116, 8], [124, 12], [136, 12], [156, 1], [329, 8], [337, 8], [0, 100], [157, 100], [345, 155]];

/** Symlink and hardlink targets; `@V@` is the sentinel dir's absolute path, `@T@` its parent's. */
const LINKS = ['@V@', '@V@/sub', '@V@/hello', '@T@', '/', '..', 'a', '/a', '/b/..', 'sub', 'l', '.wh..wh.plnk/1', 'hello', 'a/b', '@V@/link'];
/** Targets that climb out lexically (refused for symlinks and hardlinks): drawn rarely. */
const CLIMBING_LINKS = ['../..', 'b/../..', '../victim/hello'];

export interface HostileTar { tar: Buffer; entries: number }

export function hostileTar(rng: Rng, victim: string, top: string): HostileTar {
  const sub = (s: string) => s.replaceAll('@V@', victim).replaceAll('@T@', top);
  const parts: Buffer[] = [];
  const headerAt: number[] = [];
  let len = 0;
  const push = (b: Buffer, isHeader = false) => {
    if (isHeader) headerAt.push(len);
    parts.push(b);
    len += b.length;
  };
  const n = 1 + rng.int(10);
  for (let i = 0; i < n; i++) {
    const type = rng.pick(TYPES);
    const name = (rng.chance(0.02) ? rng.pick(CLIMBING) : rng.pick(NAMES)) + (type === 'dir' && rng.chance(0.5) ? '/' : '');
    const body = type === 'file' ? Buffer.alloc(rng.chance(0.8) ? rng.int(40) : rng.int(3000), 0x61 + i) : Buffer.alloc(0);
    const h: TarHeader = {
      name, type, mode: rng.pick(MODES), uid: rng.pick(IDS), gid: rng.pick(IDS), size: body.length,
      mtimeSec: rng.chance(0.1) ? -rng.int(1e9) : 1e9 + rng.int(1e9), mtimeNsec: rng.chance(0.4) ? rng.int(1e9) : 0,
      linkname: type === 'symlink' || type === 'link' ? sub(rng.pick(rng.chance(0.03) ? CLIMBING_LINKS : LINKS)) : '',
      devmajor: type === 'char' || type === 'block' ? rng.int(3) : 0, devminor: rng.int(4),
      xattrs: rng.chance(0.2) ? new Map([[rng.pick(['user.k', 'trusted.overlay.opaque', 'security.capability', 'user.overlay.opaque']), Buffer.from(rng.pick(['y', '', 'zz']))]]) : null,
    };
    if (rng.chance(0.08)) push(gnuLong(name), true); // GNU long name before the entry
    if (rng.chance(0.06)) push(paxHeader(rng.pick([
      'size=-5', 'size=99999999999999999999', 'uid=-1', 'gid=4294967296', `path=${sub(rng.pick(NAMES))}`, `linkpath=${sub(rng.pick(LINKS))}`,
      'mtime=1.5', 'mtime=-7.25', 'atime=1e9', 'mtime=99999999999999999999', 'SCHILY.xattr.user.x=1', 'size=7', 'GNU.sparse.size=1',
    ])), true);
    const hb = Buffer.alloc(headerSpace(h));
    const hn = encodeHeader(h, hb, 0);
    // encodeHeader may write a PAX header first: the ustar block is the last one
    headerAt.push(len + hn - BLOCK);
    push(hb.subarray(0, hn));
    push(Buffer.concat([body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)]));
  }
  push(Buffer.alloc(BLOCK * 2));
  let tar = Buffer.concat(parts);
  const mutations = rng.chance(0.6) ? 0 : 1 + rng.int(3);
  for (let m = 0; m < mutations; m++) {
    const at = rng.pick(headerAt);
    const [off, flen] = rng.pick(FIELDS);
    mutateField(rng, tar, at + off, flen);
    if (rng.chance(0.85)) fixChecksum(tar, at);
  }
  if (rng.chance(0.05)) tar = tar.subarray(0, rng.int(tar.length)); // cut anywhere
  if (rng.chance(0.03)) tar = Buffer.concat([tar.subarray(0, tar.length - BLOCK), Buffer.alloc(BLOCK, 0x5a)]); // garbage after one zero block
  return { tar, entries: n };
}

function mutateField(rng: Rng, tar: Buffer, off: number, len: number): void {
  switch (rng.int(5)) {
    case 0: { // base-256, often negative
      const neg = rng.chance(0.7);
      tar.fill(neg ? 0xff : 0, off, off + len);
      tar[off] = neg ? 0xff : 0x80;
      tar[off + len - 1] = rng.int(256);
      break;
    }
    case 1: // octal of a random size
      tar.write(Math.floor(rng.next() * 8 ** Math.min(len - 1, 11)).toString(8).padStart(len - 1, '0'), off, len - 1, 'latin1');
      break;
    case 2: // garbage bytes
      for (let i = 0; i < len; i++) if (rng.chance(0.3)) tar[off + i] = rng.int(256);
      break;
    case 3: // a typeflag or short name
      tar[off] = rng.pick([0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x78, 0x67, 0x4c, 0x4b, 0x53, 0x41, 0]);
      break;
    default: // one flipped bit
      tar[off + rng.int(len)] ^= 1 << rng.int(8);
  }
}

function metaEntry(typeflag: number, body: Buffer): Buffer {
  const h: TarHeader = {
    name: typeflag === 0x4c ? '././@LongLink' : 'PaxHeaders.0/x', type: 'file', mode: 0o644, uid: 0, gid: 0, size: body.length,
    mtimeSec: 0, mtimeNsec: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: null,
  };
  const hb = Buffer.alloc(headerSpace(h));
  encodeHeader(h, hb, 0);
  hb[156] = typeflag;
  fixChecksum(hb, 0);
  return Buffer.concat([hb.subarray(0, BLOCK), body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)]);
}

function gnuLong(name: string): Buffer {
  return metaEntry(0x4c, Buffer.from(name + '\0', 'latin1'));
}

function paxHeader(record: string): Buffer {
  const rest = ` ${record}\n`;
  let n = rest.length + 1;
  while (String(n).length + rest.length !== n) n = String(n).length + rest.length;
  return metaEntry(0x78, Buffer.from(`${n}${rest}`, 'latin1'));
}
