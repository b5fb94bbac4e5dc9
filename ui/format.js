// Number formatting for sizes, rates and times left. Pure functions, tested
// under node in tests/ui/unit.test.mjs.

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

// Decimal units, as the Hugging Face Hub shows file sizes, so a size here
// matches the one on the model page.
export function formatBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) return '–';
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) { n /= 1000; i++; }
  if (i === 0) return `${n} B`;
  return `${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)} ${UNITS[i]}`;
}

export function formatRate(bps) {
  if (typeof bps !== 'number' || !Number.isFinite(bps) || bps <= 0) return '–';
  return `${formatBytes(bps)}/s`;
}

export function formatEta(s) {
  if (typeof s !== 'number' || !Number.isFinite(s) || s < 0) return '–';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function formatCount(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US');
}

// Percentage 0..100 of done/total, or null when the total is not known yet.
export function percent(done, total) {
  if (typeof done !== 'number' || typeof total !== 'number' || !(total > 0)) return null;
  return Math.max(0, Math.min(100, (done / total) * 100));
}
