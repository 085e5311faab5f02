// sendfile(2): file data copied by the kernel from one fd to another (page
// cache to the output), without passing through this process. Used by the
// export for large file bodies when its output is a regular file.
import { errnoName } from './errno.ts';
import { LIBC, loadLibc } from './ffi-load.ts';

/**
 * Up to `count` bytes from `inFd`'s file position to `outFd`'s, both advanced;
 * returns the bytes moved (0 at the end of the input). Throws an error with
 * `code` (EINVAL, ENOSYS: this pair of files cannot; the caller copies itself).
 */
export function sendfile(outFd: number, inFd: number, count: number): number {
  const { load, DataType } = loadLibc();
  const r = load({
    library: LIBC, funcName: 'sendfile', retType: DataType.I64, errno: true,
    // a NULL offset: the input's own file position is used and advanced
    paramsType: [DataType.I32, DataType.I32, DataType.I64, DataType.I64], paramsValue: [outFd, inFd, 0, count],
  }) as { value: number; errnoCode: number };
  if (r.value >= 0) return r.value;
  const code = errnoName(r.errnoCode);
  throw Object.assign(new Error(`${code}: sendfile`), { code, errno: -r.errnoCode, syscall: 'sendfile' });
}
