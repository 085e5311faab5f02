// The staging area of a migration, R/.strata-migrate/:
//
//   journal.json     { from, to, phase, targetHomeWasEmptyDir } rewritten durably at each phase
//   moved.log        '<driver id> <size>' a line, appended and fsynced once the layer is moved and checked
//   root/<to>/       the target driver's home while it is filled
//   root/image/<to>/ the target's metadata (a copy of image/<from>, cache-ids kept)
//   configs/<id>     each container's config.v2.json as it was (for --rollback)
//
// phases: 'staging' (layers and metadata going into root/), 'switching' (the
// renames into R and the config rewrites, each idempotent), 'done'.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mkdirDurable, syncDir, writeFileDurable } from '../layerstore/durable.ts';
import { MigrateError, STAGING_DIR } from './plan.ts';

export type Phase = 'staging' | 'switching' | 'done';

export interface JournalState {
  version: 1;
  from: string;
  to: string;
  phase: Phase;
  /** R/<to> was an empty directory before the run (rollback puts it back) */
  targetHomeWasEmptyDir: boolean;
}

export class Journal {
  readonly dir: string;
  readonly stageRoot: string;
  readonly configs: string;
  private readonly file: string;
  private readonly log: string;

  constructor(readonly root: string) {
    this.dir = path.join(root, STAGING_DIR);
    this.stageRoot = path.join(this.dir, 'root');
    this.configs = path.join(this.dir, 'configs');
    this.file = path.join(this.dir, 'journal.json');
    this.log = path.join(this.dir, 'moved.log');
  }

  exists(): boolean {
    return fs.existsSync(this.file);
  }

  read(): JournalState {
    let s: JournalState;
    try {
      s = JSON.parse(fs.readFileSync(this.file, 'utf8')) as JournalState;
    } catch (e) {
      throw new MigrateError(`${this.file}: unreadable journal (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (s.version !== 1 || !['staging', 'switching', 'done'].includes(s.phase)) throw new MigrateError(`${this.file}: not a strata migrate journal`);
    return s;
  }

  /** Start a fresh staging area (an old one is gone first). */
  create(s: JournalState): void {
    mkdirDurable(this.dir, 0o700);
    mkdirDurable(this.stageRoot, 0o710);
    mkdirDurable(this.configs, 0o700);
    this.write(s);
  }

  write(s: JournalState): void {
    writeFileDurable(this.file, JSON.stringify(s) + '\n', 0o600);
  }

  /** Ids whose move finished and was checked (a torn last line, from a kill mid-append, is ignored). */
  moved(): Map<string, number> {
    let t = '';
    try {
      t = fs.readFileSync(this.log, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const lines = t.split('\n');
    lines.pop(); // after the last '\n': empty, or a line whose append was cut
    return new Map(lines.filter(Boolean).map((line) => {
      const [id, size] = line.split(' ');
      return [id, Number(size)];
    }));
  }

  markMoved(id: string, size: number): void {
    const fd = fs.openSync(this.log, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    try {
      fs.writeSync(fd, `${id} ${size}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    syncDir(this.dir);
  }
}
