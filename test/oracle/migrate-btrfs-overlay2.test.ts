// A store dockerd built on btrfs, migrated by strata to overlay2, proven by dockerd on overlay2: see migrate-scenario.ts.
import { migrateScenario } from './migrate-scenario.ts';

migrateScenario('btrfs', 'overlay2');
