/** What the admin clients return: runs, their steps and history, sends. */

import type { TetherEvent } from "./types.js";

/** Where a run is in its lifecycle. */
export type RunStatus =
  | "queued"
  | "running"
  | "sleeping"
  | "waiting"
  | "completed"
  | "failed"
  | "cancelled";

/** The statuses a run ends in. */
export const FINISHED_STATUSES: readonly RunStatus[] = ["completed", "failed", "cancelled"];

/** A serialized error. */
export interface ErrorInfo {
  /** Its type name, for example `TypeError` or `StepError`. */
  name: string;
  message: string;
  stack: string;
}

/** The cron tick that started a run. */
export interface CronTick {
  /** The cron expression, as declared, for example `0 9 * * *`. */
  schedule: string;
  /** Its IANA time zone; empty for UTC. */
  timezone: string;
  /** When the tick was due (not when the run started). */
  scheduledAt: Date;
}

/** A step of a run as stored. */
export interface StepInfo {
  /** The step id as written in code, with its `:n` suffix when repeated. */
  id: string;
  /** The hashed id used on the wire. */
  hashedId: string;
  kind: "run" | "sleep" | "wait_for_event" | "invoke" | "send_event";
  status: "completed" | "failed" | "retrying" | "pending";
  output: unknown;
  error: ErrorInfo | null;
  attempts: number;
  startedAt: Date | null;
  endedAt: Date | null;
  /** For `step.invoke`: the child run. */
  childRunId: string;
}

/** One entry of a run's history. */
export interface HistoryEntry {
  at: Date;
  /** For example `execution.started`, `step.failed`, `sleep.started`. */
  kind: string;
  stepId: string;
  attempt: number;
  error: ErrorInfo | null;
  until: Date | null;
  message: string;
  /** When the attempt began, for `step.failed` entries. */
  startedAt: Date | null;
}

/** A run. `steps`, `history` and `events` are filled in by `runs.get`. */
export interface Run {
  id: string;
  appId: string;
  functionId: string;
  status: RunStatus;
  eventId: string;
  attempt: number;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  /** The function's return value, once completed. */
  output: unknown;
  /** The error once failed (the reason once cancelled). */
  error: ErrorInfo | null;
  replayOf: string;
  traceId: string;
  /** The run that invoked this one (`step.invoke`), if any. */
  parentRunId: string;
  steps: StepInfo[];
  history: HistoryEntry[];
  events: TetherEvent[];
}

/** A page of runs, newest first. */
export interface RunPage {
  runs: Run[];
  /** Pass to `runs.list({ pageToken })` for the next page; empty on the last. */
  nextPageToken: string;
}

/** A function an event matched but did not start, and why. */
export interface SkippedRun {
  appId: string;
  functionId: string;
  reason: string;
  existingRunId: string;
}

/** What became of one sent event. */
export interface SendResult {
  eventId: string;
  /** True when the same event id was already received in the last 24 hours. */
  duplicate: boolean;
  /** The runs this event started. */
  runIds: string[];
  /** Functions it matched but did not start (idempotency, rate limit...), and why. */
  skipped: SkippedRun[];
  /** Runs waiting for it (`waitForEvent`) that it resumed. */
  resumedRunIds: string[];
  /** Runs it cancelled through their function's `cancelOn`. */
  cancelledRunIds: string[];
}
