/**
 * Durations as users write them: `"1h30m"`, `"500ms"`, `"2d"`, or a number of
 * milliseconds (JavaScript's unit, as in `setTimeout`).
 *
 * Strings parse exactly as in the Python SDK: the same units, the same rounding
 * (half to even) and the same error messages, checked by the shared test vectors.
 */

/** A duration: a string such as `"30s"`, `"1h30m"`, `"2d"`, or milliseconds. */
export type Duration = string | number;

const UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;

/** Milliseconds in `duration`; throws a `TypeError` or `RangeError` naming the problem. */
export function toMilliseconds(duration: Duration): number {
  let ms: number;
  if (typeof duration === "number") {
    if (!Number.isFinite(duration)) {
      throw new RangeError(`a duration must be a finite number of milliseconds, not ${String(duration)}`);
    }
    ms = duration;
  } else if (typeof duration === "string") {
    ms = parse(duration);
  } else {
    throw new TypeError(
      `a duration is a string like '1h30m' or a number of milliseconds, not ${describeType(duration)}`,
    );
  }
  if (ms < 0) {
    throw new RangeError(`a duration cannot be negative: ${quote(String(duration))}`);
  }
  return roundHalfEven(ms);
}

function parse(text: string): number {
  const compact = text.replaceAll(" ", "").toLowerCase();
  if (compact === "") {
    throw new RangeError("empty duration: write it like '30s', '1h30m' or '2d'");
  }
  PART.lastIndex = 0;
  let position = 0;
  let total = 0;
  for (let match = PART.exec(compact); match !== null; match = PART.exec(compact)) {
    const [whole, amount = "0", unit = "ms"] = match;
    total += Number.parseFloat(amount) * (UNITS_MS[unit] ?? 0);
    position += whole.length;
  }
  if (position !== compact.length) {
    throw new RangeError(
      `invalid duration ${quote(text)}: write it like '30s', '1h30m', '500ms' or '2d' ` +
        "(units: ms, s, m, h, d, w)",
    );
  }
  return total;
}

/** Rounds like Python's `round()`: halves go to the even neighbour. */
export function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** A string quoted the way Python's `repr` quotes it, for messages shared with it. */
export function quote(text: string): string {
  const escaped = text.replaceAll("\\", "\\\\").replace(/\p{Cc}/gu, (c) => CONTROL[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  if (text.includes("'") && !text.includes('"')) return `"${escaped}"`;
  return `'${escaped.replaceAll("'", "\\'")}'`;
}

const CONTROL: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** The type of a value as a message names it: `Map`, `bigint`, `null`... */
export function describeType(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === "string" && name !== "" ? name : "object";
  }
  return typeof value;
}
