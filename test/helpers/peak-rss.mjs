// Preloaded into a child (node --import) whose peak memory a test checks: at
// exit, VmHWM (peak RSS, kB) from /proc/self/status goes to $STRATA_PEAK_RSS_FILE.
import fs from 'node:fs';

const out = process.env.STRATA_PEAK_RSS_FILE;
if (out) {
  process.on('exit', () => {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    fs.writeFileSync(out, m ? m[1] : '');
  });
}
