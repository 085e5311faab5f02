// A store dockerd built on overlay2, migrated by strata to vfs, proven by dockerd on vfs: see migrate-scenario.ts.
import { migrateScenario } from './migrate-scenario.ts';

migrateScenario('overlay2', 'vfs');
