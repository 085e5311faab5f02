// overlay (v1) through the conformance suite, with moby's depth for it
// (graphtest TestOverlay50LayerRead). The suite's 128LayersMount passes too:
// every layer has exactly one lowerdir (an image root/, or the copied upper/
// of an overlay parent over the same root), so depth is no kernel limit.
import { init } from '../../drivers/overlay/overlay.ts';
import { runConformance } from './suite.ts';

runConformance('overlay', (home) => init(home, []), {
  deepLayers: 50,
  diffApplyFiles: [10, 100],
  serial: true,
  // mounted like moby, without redirect_dir: renaming a lower directory is EXDEV
  renameDirectories: false,
  // and with index=off: writing a lower file through one hardlink copies it up alone
  hardlinksBreakOnCopyUp: true,
  // moby refuses every storage option on overlay
  quota: { kind: 'unsupported' },
});
