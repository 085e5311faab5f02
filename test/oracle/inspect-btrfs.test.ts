// strata's offline inspection of a store built by a real dockerd 20.10 on btrfs,
// compared with what the daemon said about it: see inspect-vs-docker.ts.
import { inspectOracleSuite } from './inspect-vs-docker.ts';

inspectOracleSuite('btrfs');
