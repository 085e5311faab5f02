// A store dockerd built on overlay2, migrated by strata to btrfs, proven by dockerd on btrfs: see migrate-scenario.ts.
import { migrateScenario } from './migrate-scenario.ts';

migrateScenario('overlay2', 'btrfs');
