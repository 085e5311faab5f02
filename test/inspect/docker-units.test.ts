// Numbers, times and tables as the docker CLIs printed them. Expected values
// are Go's (fmt %g, go-units, text/tabwriter) or taken from the seeds' docker output.
import test from 'ava';
import {
  goFormatG, humanDuration, humanDurationLegacy, humanSizeLegacy, humanSizeWithPrecision, truncateId,
} from '../../inspect/docker-units.ts';
import { LEGACY_TABLE, MODERN_TABLE, tabTable, tabwrite } from '../../inspect/tabwriter.ts';

test('goFormatG: Go %g (precision, exponent form, trailing zeros, ties to even on the exact value)', (t) => {
  t.is(goFormatG(131.301903, 4), '131.3');
  t.is(goFormatG(180, 4), '180');
  t.is(goFormatG(999.96, 4), '1000'); // rounds up to 4 digits, exponent 3 < 4: fixed form
  t.is(goFormatG(999.999, 3), '1e+03'); // exponent 3 >= 3: Go's "1e+03" (go-units prints "1e+03kB")
  t.is(goFormatG(100.25, 4), '100.2'); // exact tie in binary → even
  t.is(goFormatG(100.75, 4), '100.8');
  t.is(goFormatG(100.35, 4), '100.3'); // 100.35 is 100.3499… in binary
  t.is(goFormatG(0.000015, 4), '1.5e-05');
  t.is(goFormatG(0.0001234, 4), '0.0001234');
  t.is(goFormatG(0, 4), '0');
});

test('sizes: docker ≤ 1.9 "%.4g %s" (seed 002/000 values) and go-units precision', (t) => {
  t.is(humanSizeLegacy(131301903), '131.3 MB');
  t.is(humanSizeLegacy(12288), '12.29 kB');
  t.is(humanSizeLegacy(24651), '24.65 kB');
  t.is(humanSizeLegacy(179_696_651), '179.7 MB');
  t.is(humanSizeLegacy(180_000_000), '180 MB');
  t.is(humanSizeLegacy(0), '0 B');
  t.is(humanSizeLegacy(999), '999 B');
  t.is(humanSizeWithPrecision(72_800_000, 3), '72.8MB');
  t.is(humanSizeWithPrecision(1_234_567_890, 3), '1.23GB');
  t.is(humanSizeWithPrecision(999_999, 3), '1e+03kB');
});

test('durations: docker 0.x and go-units thresholds', (t) => {
  const s = 1000;
  const h = 3600 * s;
  t.is(humanDurationLegacy(0.5 * s), 'Less than a second');
  t.is(humanDurationLegacy(1 * s), '1 seconds'); // docker 0.x had no singular
  t.is(humanDuration(1 * s), '1 second');
  t.is(humanDurationLegacy(327 * s), '5 minutes');
  t.is(humanDurationLegacy(90 * h), '3 days');
  t.is(humanDurationLegacy(24 * 75 * h), '10 weeks'); // weeks up to 90 days in 0.x
  t.is(humanDuration(24 * 75 * h), '2 months'); // go-units: weeks up to 60 days
  t.is(humanDurationLegacy(5887 * h), '8 months');
  t.is(humanDuration(1.6 * h), '2 hours'); // go-units rounds hours
  t.is(humanDurationLegacy(1.6 * h), 'About an hour'); // 0.x truncates
  t.is(humanDuration(3 * 365 * 24 * h), '3 years');
});

test('truncateId drops the algorithm and keeps 12 characters', (t) => {
  t.is(truncateId('sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef'), '5f70bf18a086');
  t.is(truncateId('27cf784147099545'), '27cf78414709');
});

test('tabwriter: docker 0.x images table (minwidth 20, padding 3) as in seed 002', (t) => {
  t.is(tabTable(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], [
    ['thoward/scooby_snacks', 'latest', '91acef3a5936', '29 minutes ago', '12.29 kB (virtual 131.3 MB)'],
    ['ubuntu', '12.04', '8dbd9e392a96', '8 months ago', '131.3 MB (virtual 131.3 MB)'],
  ], LEGACY_TABLE), [
    'REPOSITORY              TAG                 IMAGE ID            CREATED             SIZE',
    'thoward/scooby_snacks   latest              91acef3a5936        29 minutes ago      12.29 kB (virtual 131.3 MB)',
    'ubuntu                  12.04               8dbd9e392a96        8 months ago        131.3 MB (virtual 131.3 MB)',
    '',
  ].join('\n'));
});

test('tabwriter: docker ≥ 17 table (minwidth 10), trailing empty cells keep their padding', (t) => {
  t.is(tabTable(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], [['busybox', 'latest', 'beae173ccac6', '2 years ago', '1.24MB']], MODERN_TABLE),
    'REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\nbusybox      latest    beae173ccac6   2 years ago   1.24MB\n');
  t.is(tabwrite(['a\tb\t', 'ccc\td\t'], { minwidth: 0, padding: 1 }), 'a   b \nccc d \n');
});

test('tabwriter: column blocks end at a line without that column (Go semantics)', (t) => {
  t.is(tabwrite(['aaaa\tb', 'x', 'c\td'], { minwidth: 0, padding: 1 }), 'aaaa b\nx\nc d\n');
});
