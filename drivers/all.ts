// Importing this module registers every driver strata implements (each
// driver folder calls register() when loaded). Add one line per driver.
import './overlay/overlay.ts';
import './overlay2/overlay2.ts';
import './vfs/vfs.ts';
