// The conformance cases devicemapper runs (in the VM: devicemapper-in-vm.ts) and the
// host-side test asserts (devicemapper.test.ts), in one list both import.
import { checks, type CheckContext } from './suite.ts';

/** dm.* options small enough for the VM's tmpfs: sparse loop files, a 512 MiB base (xfs's minimum is 300 MB). */
export const VM_OPTIONS = ['dm.basesize=512M', 'dm.loopdatasize=8G', 'dm.loopmetadatasize=128M'];

/** The suite's cases, named as runConformance names them. SetQuota is not among them: dm's `size` grows a device, it sets no quota. */
export const CASES: [string, (c: CheckContext) => Promise<unknown>][] = [
  ['CreateEmpty', checks.createEmpty],
  ['CreateBase', checks.createBase],
  ['CreateSnap', checks.createSnap],
  ['DeepLayerRead 32', (c) => checks.deepLayerRead(c, 32)],
  ['DiffApply 10 files', (c) => checks.diffApply(c, 10)],
  ['DiffApply 100 files', (c) => checks.diffApply(c, 100)],
  ['Changes', checks.changes],
  ['LayerFileupdate', checks.layerFileUpdate],
  ['RemoveDirectoryInLowerLayer', checks.removeDirectoryInLowerLayer],
  ['Chown', checks.chown],
  ['Rename', (c) => checks.rename(c, true)],
  ['DirectoryPermissionOnCommit', checks.directoryPermissionOnCommit],
  ['RemoveIntermediateSnapshot', checks.removeIntermediate],
  ['DeletedFilesInChildSnapshot', checks.deletedFilesInChildSnapshot],
  ['MoveFileFromLowerLayer', checks.moveFileFromLowerLayer],
  // 32, not 128: each layer is a thin snapshot with its own mount, 2 s apiece
  // under emulation; 128 cost 260 s of CI for no case 32 does not reach
  ['128LayersMount at 32 layers', (c) => checks.layers128(c, 32)],
  ['Echo', checks.echo],
  ['ApplyDiffWhiteouts', checks.applyDiffWhiteouts],
  ['CopyFidelity', (c) => checks.copyFidelity(c, false)],
];
