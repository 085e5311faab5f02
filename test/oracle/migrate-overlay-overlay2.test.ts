// A store dockerd built on overlay (v1, deprecated, still in 20.10), migrated by strata to overlay2, proven by dockerd on overlay2: see migrate-scenario.ts.
import { migrateScenario } from './migrate-scenario.ts';

migrateScenario('overlay', 'overlay2');
