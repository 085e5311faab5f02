// Every workload group, in report order. A new group is one file in workloads/
// and one line here.
import type { Workload } from './types.ts';
import { deepChains } from './workloads/deep-chains.ts';
import { graphbench } from './workloads/graphbench.ts';
import { inspectWorkloads } from './workloads/inspect.ts';
import { tarWorkloads } from './workloads/tar.ts';
import { realistic } from './workloads/realistic.ts';

export const WORKLOADS: Workload[] = [...graphbench, ...deepChains, ...realistic, ...tarWorkloads, ...inspectWorkloads];
