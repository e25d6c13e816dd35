// format.js turns server values into text people read: times as a local
// date with "3 minutes ago", not RFC 3339 with nanoseconds.

const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** parseTime returns the Date of v (RFC 3339 text, any fraction of a second), or null. */
export function parseTime(v) {
  if (v === undefined || v === null || v === "") return null;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v;
  // Date.parse reads at most milliseconds reliably; cut longer fractions.
  const s = String(v).replace(/(\.\d{3})\d+/, "$1");
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** relativeTime says how far d is from now: "3 minutes ago", "in 29 days", "just now". */
export function relativeTime(d, now = new Date()) {
  const secs = Math.round((d.getTime() - now.getTime()) / 1000);
  if (Math.abs(secs) < 5) return "just now";
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of UNITS) {
    if (Math.abs(secs) >= size) return rtf.format(Math.trunc(secs / size), unit);
  }
  return rtf.format(secs, "second");
}

/** absoluteTime is d as a local date and time, to the second. */
export function absoluteTime(d) {
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** humanTime is "1 Dec 2026, 17:34:49 (3 minutes ago)", or fallback when v is no time. */
export function humanTime(v, fallback = "—", now = new Date()) {
  const d = parseTime(v);
  if (!d) return v === undefined || v === null || v === "" ? fallback : String(v);
  return `${absoluteTime(d)} (${relativeTime(d, now)})`;
}

/** minuteTime is a time known to the minute (an API key's last use): "1 Dec 2026, 17:34 (within a minute)". */
export function minuteTime(d, now = new Date()) {
  const abs = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  const ago = now.getTime() - d.getTime();
  return `${abs} (${ago < 120000 ? "within the last minutes" : relativeTime(d, now)})`;
}

/**
 * timeElement returns a <time> showing humanTime(v) (minuteTime with
 * opts.minute), its exact UTC instant in datetime and title.
 */
export function timeElement(v, fallback = "—", opts = {}) {
  const el = document.createElement("time");
  const d = parseTime(v);
  el.textContent = d && opts.minute ? minuteTime(d) : humanTime(v, fallback);
  if (d) {
    el.dateTime = d.toISOString();
    el.title = d.toISOString();
  }
  return el;
}

/** plural is "1 entity" / "2 entities". */
export function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}
