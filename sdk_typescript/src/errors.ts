/** Errors user code throws to steer retries, and errors the SDK throws. */

import { type Duration, toMilliseconds } from "./durations.js";

/** Throw to fail a step (or the function) at once, without retrying. */
export class NonRetriableError extends Error {
  override name = "NonRetriableError";
}

/**
 * Throw to retry a step (or the function) after a delay the code chooses,
 * instead of the backoff schedule: a duration (`"30s"`, milliseconds) or a
 * `Date` to retry at.
 */
export class RetryAfterError extends Error {
  override name = "RetryAfterError";
  /** The delay in milliseconds. */
  readonly retryAfterMs: number;

  constructor(message: string, retryAfter: Duration | Date, options?: ErrorOptions) {
    super(message, options);
    if (retryAfter instanceof Date && Number.isNaN(retryAfter.getTime())) {
      throw new RangeError("RetryAfterError needs a valid Date to retry at, not an Invalid Date");
    }
    this.retryAfterMs =
      retryAfter instanceof Date
        ? Math.max(0, retryAfter.getTime() - Date.now())
        : toMilliseconds(retryAfter);
  }
}

/**
 * A step failed for good (its retries are spent, or it threw
 * `NonRetriableError`). Thrown where user code awaits the step; catch it to
 * carry on.
 */
export class StepError extends Error {
  override name = "StepError";

  constructor(
    /** The step id as written in code (with its `:n` suffix when repeated). */
    readonly stepId: string,
    /** The name of the error the step threw, for example `TypeError`. */
    readonly errorName: string,
    /** The message of the error the step threw. */
    readonly errorMessage: string,
    /** Its stack trace as text, when known. */
    readonly errorStack = "",
  ) {
    super(`step '${stepId}' failed: ${errorName}: ${errorMessage}`);
  }
}

/** A call to the control plane failed. `code` is the gRPC status name. */
export class TetherError extends Error {
  override name = "TetherError";
  readonly code: string = "UNKNOWN";
}

/** The request was malformed; the message says what is wrong. */
export class InvalidArgumentError extends TetherError {
  override name = "InvalidArgumentError";
  override readonly code: string = "INVALID_ARGUMENT";
}

/** A size or count limit was broken; the message names the limit. */
export class LimitExceededError extends TetherError {
  override name = "LimitExceededError";
  override readonly code = "RESOURCE_EXHAUSTED";
}

/** No such run, event or function. */
export class NotFoundError extends TetherError {
  override name = "NotFoundError";
  override readonly code = "NOT_FOUND";
}

/** The call does not apply in the current state (cancel a finished run...). */
export class FailedPreconditionError extends TetherError {
  override name = "FailedPreconditionError";
  override readonly code: string = "FAILED_PRECONDITION";
}

/** The control plane cannot be reached. */
export class UnavailableError extends TetherError {
  override name = "UnavailableError";
  override readonly code = "UNAVAILABLE";
}

/** API keys are configured and this client has none, or a wrong one. */
export class UnauthenticatedError extends TetherError {
  override name = "UnauthenticatedError";
  override readonly code = "UNAUTHENTICATED";
}

/** The API key's role (or its apps) does not allow the call; the message names the role it needs. */
export class PermissionDeniedError extends TetherError {
  override name = "PermissionDeniedError";
  override readonly code = "PERMISSION_DENIED";
}

/** The deadline of a call passed (for example `runs.wait` with a timeout). */
export class DeadlineExceededError extends TetherError {
  override name = "DeadlineExceededError";
  override readonly code = "DEADLINE_EXCEEDED";
}

/** A function's definition is invalid (bad or duplicate id, bad trigger...). */
export class ConfigError extends InvalidArgumentError {
  override name = "ConfigError";
}

/** The control plane refused this worker; the message says why. */
export class WorkerRejectedError extends FailedPreconditionError {
  override name = "WorkerRejectedError";
}

/** The error's type name as the wire carries it (a class name, like Python's). */
export function errorName(error: unknown): string {
  if (!(error instanceof Error)) return typeof error === "object" ? "Error" : typeof error;
  const className = error.constructor.name;
  if (className === "") return error.name === "" ? "Error" : error.name;
  // A name inherited from a base class (Error, TypeError, NonRetriableError...) gives way to the class's own.
  for (let base: unknown = Object.getPrototypeOf(error.constructor); typeof base === "function" && base !== Function.prototype; base = Object.getPrototypeOf(base)) {
    if (base.name === error.name) return className;
  }
  return error.name;
}

/** The error's message; a thrown non-Error value as text. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  try {
    if (typeof error === "string") return error;
    // undefined for values JSON cannot show (a function, undefined itself).
    const text = JSON.stringify(error) as unknown;
    return typeof text === "string" ? text : String(error);
  } catch {
    return String(error);
  }
}
