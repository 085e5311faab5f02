// An aufs store (dockerd 20.10 cannot run aufs here: no module) written by strata's aufs
// driver, migrated to overlay2 and proven by dockerd: see migrate-scenario.ts.
import { strataSourceScenario } from './migrate-scenario.ts';
import { runnableStoreSpec, writeRunnableStore } from './migrate-stores.ts';

strataSourceScenario('aufs', 'overlay2', (root) => writeRunnableStore(root, 'aufs', runnableStoreSpec()));
