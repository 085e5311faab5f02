// Numbers and times the way the docker CLI prints them, per era:
//   docker 0.x–1.9  utils/units.HumanSize  "%.4g %s"  ("131.3 MB", "24.65 kB", "0 B")
//                   utils.HumanDuration    (hours truncated, weeks up to 12, "%f years")
//   docker ≥ 1.10   go-units HumanSizeWithPrecision(size, 3) in `image ls` ("72.8MB"),
//                   HumanSize (precision 4) elsewhere; go-units HumanDuration
// Sizes are decimal (1 kB = 1000 B). Go's %g is reproduced exactly: rounding
// is done on the exact binary value of the float, ties to even.

/**
 * Go's fmt `%.{prec}g` of a finite number: `prec` significant digits, the
 * exponent form when the decimal exponent is < -4 or >= prec, trailing zeros
 * removed.
 */
export function goFormatG(x: number, prec: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  if (prec < 1) prec = 1;
  const neg = x < 0;
  // JS rounds a tie up, Go to even; they agree everywhere else. An exact tie
  // at `prec` digits shows as a 5 in the next digit, so only then are 100
  // significant digits taken — enough for the exact expansion of every double
  // sizes and durations produce (≤ 55 digits for 1 ≤ |x| < 1e3) — and the
  // rounding done here; otherwise JS's own rounding to `prec` digits is Go's.
  const a = Math.abs(x);
  const probe = a.toExponential(Math.min(prec, 100)).split('e')[0];
  const exact = probe[probe.length - 1] === '5';
  let [mant, expPart] = (exact ? a.toExponential(99) : a.toExponential(prec - 1)).split('e');
  if (!mant.includes('.')) mant = `${mant}.`;
  const digits = (mant[0] + mant.slice(2)).split('').map(Number);
  let exp = Number(expPart);
  const kept = digits.slice(0, prec);
  const next = digits[prec] ?? 0;
  const restNonZero = digits.slice(prec + 1).some((d) => d !== 0);
  const roundUp = next > 5 || (next === 5 && (restNonZero || kept[prec - 1] % 2 === 1));
  if (roundUp) {
    let i = prec - 1;
    while (i >= 0 && kept[i] === 9) kept[i--] = 0;
    if (i < 0) {
      kept.unshift(1);
      kept.pop();
      exp++;
    } else kept[i]++;
  }
  while (kept.length > 1 && kept[kept.length - 1] === 0) kept.pop();
  let out: string;
  if (exp < -4 || exp >= prec) {
    const m = kept.length > 1 ? `${kept[0]}.${kept.slice(1).join('')}` : `${kept[0]}`;
    const e = Math.abs(exp);
    out = `${m}e${exp < 0 ? '-' : '+'}${e < 10 ? '0' : ''}${e}`;
  } else if (exp < 0) {
    out = `0.${'0'.repeat(-exp - 1)}${kept.join('')}`;
  } else {
    const int = kept.slice(0, exp + 1);
    while (int.length < exp + 1) int.push(0);
    const frac = kept.slice(exp + 1);
    out = frac.length ? `${int.join('')}.${frac.join('')}` : int.join('');
  }
  return neg ? `-${out}` : out;
}

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];

/** Divide by 1000 the way Go's loops do (one float division per step). */
function scale(size: number): [number, string] {
  let i = 0;
  let s = size;
  while (s >= 1000 && i < DECIMAL_UNITS.length - 1) {
    s /= 1000;
    i++;
  }
  return [s, DECIMAL_UNITS[i]];
}

/** docker ≤ 1.9 HumanSize: `%.4g %s`, e.g. "131.3 MB", "12.29 kB", "0 B". */
export function humanSizeLegacy(size: number): string {
  const [s, unit] = scale(size);
  return `${goFormatG(s, 4)} ${unit}`;
}

/** go-units HumanSizeWithPrecision (docker ≥ 1.13 CLI): no space, e.g. "72.8MB" at precision 3. */
export function humanSizeWithPrecision(size: number, precision: number): string {
  const [s, unit] = scale(size);
  return `${goFormatG(s, precision)}${unit}`;
}

/** go-units HumanSize: precision 4, no space ("1.286GB"). */
export function humanSize(size: number): string {
  return humanSizeWithPrecision(size, 4);
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** docker 0.x–1.9 utils.HumanDuration of `ms` milliseconds ("8 months", "5 minutes"). */
export function humanDurationLegacy(ms: number): string {
  const seconds = Math.trunc(ms / SECOND);
  if (seconds < 1) return 'Less than a second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / MINUTE);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / HOUR);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 3) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${(ms / HOUR / 24 / 365).toFixed(6)} years`;
}

/** go-units HumanDuration (docker ≥ 1.10 CLI). */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / SECOND);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / MINUTE);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / HOUR + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / HOUR / 24 / 365)} years`;
}

/** stringid.TruncateID: drop an algorithm prefix, keep 12 characters. */
export function truncateId(id: string): string {
  const i = id.indexOf(':');
  const hex = i >= 0 ? id.slice(i + 1) : id;
  return hex.slice(0, 12);
}
