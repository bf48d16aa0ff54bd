/** Wire messages to the SDK's models and back. */

import { describeType } from "./durations.js";
import { InvalidArgumentError } from "./errors.js";
import { NotSerializableError, decodeJson, encodeJson } from "./json.js";
import type { CronTick, ErrorInfo, HistoryEntry, Run, RunStatus, SendResult, StepInfo } from "./models.js";
import type { EventPayload, TetherEvent } from "./types.js";
import { RunStatus as WireRunStatus, StepKind, type ErrorInfo as WireErrorInfo, type Event as WireEvent } from "./gen/tether/v1/common.js";
import type { SendResult as WireSendResult } from "./gen/tether/v1/event_service.js";
import {
  HistoryKind,
  StepStatus,
  type GetRunResponse,
  type Run as WireRun,
} from "./gen/tether/v1/run_service.js";
import type { CronTick as WireCronTick } from "./gen/tether/v1/worker_service.js";

const EVENT_FIELDS = new Set(["name", "data", "id", "user", "ts"]);

/** An event as user code sees it. */
export function eventFromWire(message: WireEvent): TetherEvent {
  const user = message.user.length > 0 ? decodeJson(message.user) : null;
  return {
    name: message.name,
    data: (decodeJson(message.data) as Record<string, unknown> | null) ?? {},
    id: message.id,
    ...(isNonEmptyObject(user) ? { user } : {}),
    ts: message.tsMs,
  };
}

/** The memoized output of a wait for an event (`{"id", "name", "data", "user", "ts"}`), or null. */
export function eventFromJson(value: unknown): TetherEvent | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const fields = value as Record<string, unknown>;
  const user = fields.user;
  return {
    name: typeof fields.name === "string" ? fields.name : "",
    data: (fields.data as Record<string, unknown> | null | undefined) ?? {},
    id: typeof fields.id === "string" ? fields.id : "",
    ...(isNonEmptyObject(user) ? { user } : {}),
    ts: typeof fields.ts === "number" ? fields.ts : 0,
  };
}

function isNonEmptyObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length > 0;
}

/** An event to send; throws `InvalidArgumentError` naming what is wrong. */
export function eventToWire(event: EventPayload, index = 0): WireEvent {
  const given: unknown = event;
  if (typeof given !== "object" || given === null || Array.isArray(given)) {
    throw new InvalidArgumentError(
      `event ${index}: send an object like { name: "app/user.signup", data: {...} }, not ${describeType(given)}`,
    );
  }
  const payload = given as EventPayload;
  const unknown = Object.keys(payload).filter((key) => !EVENT_FIELDS.has(key)).sort();
  if (unknown.length > 0) {
    throw new InvalidArgumentError(
      `event ${index}: unknown field(s) ${unknown.map((k) => `'${k}'`).join(", ")}; an event has name, data, id, user and ts`,
    );
  }
  const name: unknown = payload.name;
  const data: unknown = payload.data ?? {};
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new InvalidArgumentError(
      `event ${index} ('${String(name)}'): data must be an object (a JSON object), not ${Array.isArray(data) ? "an array" : typeof data}`,
    );
  }
  let dataBytes: Buffer;
  let userBytes: Buffer;
  try {
    dataBytes = encodeJson(data);
    userBytes = payload.user !== undefined && Object.keys(payload.user).length > 0 ? encodeJson(payload.user) : Buffer.alloc(0);
  } catch (error) {
    if (error instanceof NotSerializableError) {
      throw new InvalidArgumentError(`event ${index} ('${String(name)}') is not JSON-serializable: ${error.message}`);
    }
    throw error;
  }
  return {
    id: payload.id ?? "",
    name: typeof name === "string" ? name : "",
    data: dataBytes,
    user: userBytes,
    tsMs: Math.trunc(payload.ts ?? 0),
  };
}

export function cronFromWire(message: WireCronTick): CronTick {
  return {
    schedule: message.schedule,
    timezone: message.timezone,
    scheduledAt: new Date(message.scheduledAtMs),
  };
}

function date(ms: number): Date | null {
  return ms === 0 ? null : new Date(ms);
}

function error(message: WireErrorInfo | undefined): ErrorInfo | null {
  return message === undefined ? null : { name: message.name, message: message.message, stack: message.stack };
}

export const RUN_STATUSES: ReadonlyMap<WireRunStatus, RunStatus> = new Map([
  [WireRunStatus.RUN_STATUS_QUEUED, "queued"],
  [WireRunStatus.RUN_STATUS_RUNNING, "running"],
  [WireRunStatus.RUN_STATUS_SLEEPING, "sleeping"],
  [WireRunStatus.RUN_STATUS_WAITING, "waiting"],
  [WireRunStatus.RUN_STATUS_COMPLETED, "completed"],
  [WireRunStatus.RUN_STATUS_FAILED, "failed"],
  [WireRunStatus.RUN_STATUS_CANCELLED, "cancelled"],
]);
export const RUN_STATUSES_TO_WIRE: ReadonlyMap<RunStatus, WireRunStatus> = new Map(
  [...RUN_STATUSES].map(([wire, status]) => [status, wire]),
);

const STEP_KINDS: ReadonlyMap<StepKind, StepInfo["kind"]> = new Map([
  [StepKind.STEP_KIND_RUN, "run"],
  [StepKind.STEP_KIND_SLEEP, "sleep"],
  [StepKind.STEP_KIND_WAIT_FOR_EVENT, "wait_for_event"],
  [StepKind.STEP_KIND_INVOKE, "invoke"],
  [StepKind.STEP_KIND_SEND_EVENT, "send_event"],
]);
const STEP_STATUSES: ReadonlyMap<StepStatus, StepInfo["status"]> = new Map([
  [StepStatus.STEP_STATUS_COMPLETED, "completed"],
  [StepStatus.STEP_STATUS_FAILED, "failed"],
  [StepStatus.STEP_STATUS_RETRYING, "retrying"],
  [StepStatus.STEP_STATUS_PENDING, "pending"],
]);

/** `HISTORY_KIND_SLEEP_STARTED` as `sleep.started`, and so on. */
export function historyKindName(kind: HistoryKind): string {
  const name = HistoryKind[kind] as string | undefined;
  if (name === undefined || kind === HistoryKind.HISTORY_KIND_UNSPECIFIED) return "unknown";
  const words = name.replace(/^HISTORY_KIND_/, "").toLowerCase();
  return words === "non_determinism" ? words : words.replace("_", ".");
}

export function runFromWire(message: WireRun | undefined): Run {
  if (message === undefined) throw new Error("the control plane sent no run");
  return {
    id: message.id,
    appId: message.appId,
    functionId: message.functionId,
    status: RUN_STATUSES.get(message.status) ?? "queued",
    eventId: message.eventId,
    attempt: message.attempt,
    createdAt: new Date(message.createdAtMs),
    startedAt: date(message.startedAtMs),
    endedAt: date(message.endedAtMs),
    output: message.output.length > 0 ? decodeJson(message.output) : null,
    error: error(message.error),
    replayOf: message.replayOf,
    traceId: message.traceId,
    parentRunId: message.parentRunId,
    steps: [],
    history: [],
    events: [],
  };
}

export function runDetailFromWire(response: GetRunResponse): Run {
  const run = runFromWire(response.run);
  run.steps = response.steps.map(
    (s): StepInfo => ({
      id: s.name,
      hashedId: s.stepId,
      kind: STEP_KINDS.get(s.kind) ?? "run",
      status: STEP_STATUSES.get(s.status) ?? "completed",
      output: s.output.length > 0 ? decodeJson(s.output) : null,
      error: error(s.error),
      attempts: s.attempts,
      startedAt: date(s.startedAtMs),
      endedAt: date(s.endedAtMs),
      childRunId: s.childRunId,
    }),
  );
  run.history = response.history.map(
    (h): HistoryEntry => ({
      at: date(h.tsMs) ?? run.createdAt,
      kind: historyKindName(h.kind),
      stepId: h.stepName,
      attempt: h.attempt,
      error: error(h.error),
      until: date(h.untilMs),
      message: h.message,
      startedAt: date(h.startedAtMs),
    }),
  );
  run.events = response.events.map(eventFromWire);
  return run;
}

export function sendResultFromWire(result: WireSendResult): SendResult {
  return {
    eventId: result.eventId,
    duplicate: result.duplicate,
    runIds: result.runIds,
    skipped: result.skipped.map((s) => ({
      appId: s.appId,
      functionId: s.functionId,
      reason: s.reason,
      existingRunId: s.existingRunId,
    })),
    resumedRunIds: result.resumedRunIds,
    cancelledRunIds: result.cancelledRunIds,
  };
}
