/**
 * JSON as the wire wants it: compact UTF-8 bytes, and a clear error for values
 * that JSON would silently change or drop (`NaN`, a `Map`, a `bigint`, a cycle).
 */

import { describeType } from "./durations.js";

/** A value is not JSON. `found` names the offending type, `path` where it is. */
export class NotSerializableError extends TypeError {
  override name = "NotSerializableError";

  constructor(
    readonly found: string,
    readonly path: string,
    detail?: string,
  ) {
    super(
      (detail ?? `a value of type '${found}' is not JSON-serializable`) +
        (path === "" ? "" : ` (at ${path})`),
    );
  }
}

/**
 * `value` as compact JSON bytes. `undefined` at the top is `null` (a step that
 * returns nothing); inside objects it is left out, as `JSON.stringify` does.
 */
export function encodeJson(value: unknown): Buffer {
  check(value, "", new Set());
  return Buffer.from(JSON.stringify(value === undefined ? null : value), "utf8");
}

/** The value in JSON bytes; empty bytes are `null`. */
export function decodeJson(payload: Uint8Array | undefined): unknown {
  if (payload === undefined || payload.length === 0) return null;
  return JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString("utf8")) as unknown;
}

// In a `u` pattern a well-formed surrogate pair is one code point: only lone halves match.
const LONE_SURROGATE = /\p{Cs}/u;

function check(value: unknown, path: string, seen: Set<object>): void {
  switch (typeof value) {
    case "undefined":
    case "boolean":
      return;
    case "string":
      if (LONE_SURROGATE.test(value)) {
        throw new NotSerializableError(
          "string",
          path,
          "a string holds a lone surrogate, which is not valid Unicode",
        );
      }
      return;
    case "number":
      if (!Number.isFinite(value)) {
        throw new NotSerializableError(
          "number",
          path,
          `${String(value)} is not JSON (NaN and Infinity are not JSON)`,
        );
      }
      return;
    case "bigint":
    case "symbol":
    case "function":
      throw new NotSerializableError(typeof value, path);
    case "object":
      break;
  }
  if (value === null) return;
  const object = value;
  if (typeof (object as { toJSON?: unknown }).toJSON === "function") {
    // Dates and other values that say how they serialize.
    check((object as { toJSON: (key: string) => unknown }).toJSON(""), path, seen);
    return;
  }
  if (seen.has(object)) {
    throw new NotSerializableError(describeType(object), path, "a circular reference is not JSON");
  }
  seen.add(object);
  if (Array.isArray(object)) {
    object.forEach((item: unknown, index) => {
      check(item, `${path}[${index}]`, seen);
    });
  } else {
    const prototype: unknown = Object.getPrototypeOf(object);
    if (prototype !== Object.prototype && prototype !== null) {
      throw new NotSerializableError(describeType(object), path);
    }
    for (const [key, item] of Object.entries(object)) {
      if (LONE_SURROGATE.test(key)) {
        throw new NotSerializableError("string", path, "an object key holds a lone surrogate, which is not valid Unicode");
      }
      check(item, /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`, seen);
    }
  }
  seen.delete(object);
}
