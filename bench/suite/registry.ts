// Every workload group, in report order. A new group is one file in workloads/
// and one line here.
import type { Workload } from './types.ts';
import { graphbench } from './workloads/graphbench.ts';
import { tarWorkloads } from './workloads/tar.ts';
import { realistic } from './workloads/realistic.ts';

export const WORKLOADS: Workload[] = [...graphbench, ...realistic, ...tarWorkloads];
