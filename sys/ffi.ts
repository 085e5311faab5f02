// ffi-rs, loaded at import (see ffi-load.ts for how and why without its libc probe).
import { loadFfi } from './ffi-load.ts';

const ffi = loadFfi();
export const { open, load, DataType } = ffi;
export type DataType = import('ffi-rs').DataType;
