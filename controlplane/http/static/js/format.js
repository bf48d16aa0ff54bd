// Times and durations, written the same way everywhere.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "<1ms", "16ms", "1.53s", "12.3s", "2m 5s", "3h 20m", "2d 4h". */
export function formatDuration(ms) {
  if (!Number.isFinite(ms)) return "—";
  const sign = ms < 0 ? "-" : "";
  ms = Math.abs(ms);
  if (ms < 1) return `${sign}<1ms`;
  if (ms < SECOND) return `${sign}${Math.round(ms)}ms`;
  if (ms < 10 * SECOND) return `${sign}${(ms / SECOND).toFixed(2)}s`;
  if (ms < MINUTE) return `${sign}${(ms / SECOND).toFixed(1)}s`;
  return sign + twoUnits(ms);
}

/** A period without zero parts: "1m", "1m 30s", "1h", "250ms". */
export function formatPeriod(ms) {
  if (ms < SECOND) return `${ms}ms`;
  const parts = [];
  let rest = ms;
  for (const [name, size] of [["d", DAY], ["h", HOUR], ["m", MINUTE], ["s", SECOND]]) {
    const whole = Math.floor(rest / size);
    rest -= whole * size;
    if (whole) parts.push(`${whole}${name}`);
  }
  if (rest) parts.push(`${rest}ms`);
  return parts.join(" ");
}

/** The two largest units: "2m 5s", "3h 20m", "2d 4h". */
function twoUnits(ms) {
  const units = [
    ["d", DAY],
    ["h", HOUR],
    ["m", MINUTE],
    ["s", SECOND],
  ];
  for (let i = 0; i < units.length; i++) {
    const [name, size] = units[i];
    if (ms >= size || i === units.length - 1) {
      const whole = Math.floor(ms / size);
      if (i === units.length - 1) return `${whole}${name}`;
      const [nextName, nextSize] = units[i + 1];
      const rest = Math.floor((ms - whole * size) / nextSize);
      return `${whole}${name} ${rest}${nextName}`;
    }
  }
  return "";
}

/** "12s ago", "3h 20m ago", "in 3h 20m", "just now". */
export function formatRelative(ms, now = Date.now()) {
  const diff = now - ms;
  const size = Math.abs(diff);
  if (size < 2 * SECOND) return "just now";
  const text = size < MINUTE ? `${Math.floor(size / SECOND)}s` : twoUnits(size);
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** Local time: "2025-07-14 14:02:11" (".123" with milliseconds). */
export function formatAbsolute(ms, withMs = false) {
  if (!ms) return "—";
  const d = new Date(ms);
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${date} ${formatClock(ms, withMs)}`;
}

/** A moment near now: "14:02:11" today, else "2025-07-15 14:02". */
export function formatWhen(ms, now = Date.now()) {
  const a = new Date(ms);
  const b = new Date(now);
  if (a.toDateString() === b.toDateString()) return formatClock(ms);
  return formatAbsolute(ms).slice(0, 16);
}

export function formatClock(ms, withMs = false) {
  const d = new Date(ms);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${time}.${pad(d.getMilliseconds(), 3)}` : time;
}

/** An exact duration for details: "1h 0m 0.012s (3,600,012 ms)". */
export function formatExact(ms) {
  if (!Number.isFinite(ms)) return "—";
  const exact = `${Math.round(ms).toLocaleString("en-US")} ms`;
  if (ms < SECOND) return exact;
  return `${formatDuration(ms)} (${exact})`;
}

/** An offset on a time axis, precise to the tick ``step``: "250ms", "1.5s", "2:05", "24:00:00.250". */
export function formatOffset(offset, step) {
  if (offset === 0) return "0";
  if (offset < SECOND && step < SECOND) return `${Math.round(offset)}ms`;
  if (offset < MINUTE) {
    const decimals = step >= SECOND ? 0 : step >= 100 ? 1 : step >= 10 ? 2 : 3;
    return `${(offset / SECOND).toFixed(decimals)}s`;
  }
  const days = Math.floor(offset / DAY);
  const hours = Math.floor((offset % DAY) / HOUR);
  const minutes = Math.floor((offset % HOUR) / MINUTE);
  const seconds = Math.floor((offset % MINUTE) / SECOND);
  const millis = Math.round(offset % SECOND);
  let text;
  if (step >= DAY) text = `${days}d`;
  else if (step >= HOUR) text = days ? (hours ? `${days}d ${hours}h` : `${days}d`) : `${hours}h`;
  else if (offset >= HOUR) text = `${days * 24 + hours}:${pad(minutes)}`;
  else text = `${minutes}:${pad(seconds)}`;
  if (step < MINUTE && offset >= HOUR) text += `:${pad(seconds)}`;
  if (step < SECOND) text += `.${pad(millis, 3)}`;
  return text;
}

/** A "nice" tick step (1, 2, 5 × 10^n ms, or whole seconds/minutes/hours) near ``raw``. */
export function niceStep(raw) {
  const candidates = [
    1, 2, 5, 10, 20, 50, 100, 200, 250, 500,
    SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
    MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
    HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
    DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY,
  ];
  for (const step of candidates) if (step >= raw) return step;
  return Math.ceil(raw / (30 * DAY)) * 30 * DAY;
}

export const DURATIONS = { SECOND, MINUTE, HOUR, DAY };
