// An aufs store (dockerd 20.10 cannot run aufs here: no module) written by strata's aufs
// driver, migrated to overlay2 and proven by dockerd: see migrate-scenario.ts.
import { strataSourceScenario, writeRunnableStore } from './migrate-scenario.ts';

strataSourceScenario('aufs', 'overlay2', (root, spec) => writeRunnableStore(root, 'aufs', spec));
