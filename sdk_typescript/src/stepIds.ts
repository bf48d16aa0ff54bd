/** Step ids: the `:n` suffix for repeats and the SHA-1 hash used on the wire. */

import { createHash } from "node:crypto";

import { quote } from "./durations.js";

export const MAX_STEP_ID_LENGTH = 256;

/** The wire id of a step: SHA-1 hex of its id as written, with any suffix. */
export function hashStepId(name: string): string {
  return createHash("sha1").update(name, "utf8").digest("hex");
}

/** The span id the control plane gives a step attempt (docs/protocol.md, "Trace context"). */
export function stepSpanId(runId: string, hashedStepId: string, attempt: number): string {
  const digest = createHash("sha1")
    .update(`${runId}:${hashedStepId}:${attempt}`, "utf8")
    .digest("hex")
    .slice(0, 16);
  return /^0+$/.test(digest) ? "0000000000000001" : digest;
}

/**
 * Assigns each step call its id: the id as written the first time, then
 * `id:1`, `id:2`... for repeats, skipping any already taken.
 */
export class StepIds {
  readonly #used = new Set<string>();
  readonly #nextSuffix = new Map<string, number>();

  allocate(stepId: string): string {
    if (typeof stepId !== "string" || stepId === "") {
      throw new TypeError("a step needs a non-empty string id, like 'send-welcome-email'");
    }
    // Lengths in code points, as the Python SDK counts them.
    // eslint-disable-next-line @typescript-eslint/no-misused-spread
    const codePoints = [...stepId];
    const length = codePoints.length;
    if (length > MAX_STEP_ID_LENGTH) {
      throw new RangeError(
        `step id ${quote(codePoints.slice(0, 40).join(""))}... is ${length} characters; ` +
          `the limit is ${MAX_STEP_ID_LENGTH}`,
      );
    }
    let name = stepId;
    if (this.#used.has(name)) {
      let n = this.#nextSuffix.get(stepId) ?? 1;
      while (this.#used.has(`${stepId}:${n}`)) n += 1;
      name = `${stepId}:${n}`;
      this.#nextSuffix.set(stepId, n + 1);
    }
    this.#used.add(name);
    return name;
  }
}
