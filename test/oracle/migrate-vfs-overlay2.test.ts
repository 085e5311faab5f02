// A store dockerd built on vfs, migrated by strata to overlay2, proven by dockerd on overlay2: see migrate-scenario.ts.
import { migrateScenario } from './migrate-scenario.ts';

migrateScenario('vfs', 'overlay2');
