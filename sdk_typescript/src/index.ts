/**
 * Tether: durable, event-driven functions.
 *
 * ```ts
 * import { Tether } from "@tether/sdk";
 *
 * const tether = new Tether({ appId: "shop" });
 *
 * export const onboarding = tether.createFunction(
 *   { id: "onboarding-flow", event: "app/user.signup" },
 *   async ({ event, step }) => {
 *     await step.run("send-welcome-email", () => sendEmail(event.data.email));
 *     await step.sleep("wait-1d", "24h");
 *   },
 * );
 *
 * await tether.serve();
 * ```
 */

export { Tether, type ServeOptions, type TetherOptions } from "./client.js";
export type { ConnectionOptions } from "./connection.js";
export type { Duration } from "./durations.js";
export {
  ConfigError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  LimitExceededError,
  NonRetriableError,
  NotFoundError,
  PermissionDeniedError,
  RetryAfterError,
  StepError,
  TetherError,
  UnauthenticatedError,
  UnavailableError,
  WorkerRejectedError,
} from "./errors.js";
export type {
  BatchEventsOption,
  ConcurrencyOption,
  DebounceOption,
  FlowOptions,
  PriorityOption,
  RateLimitOption,
  SingletonOption,
  ThrottleOption,
} from "./flow.js";
export {
  FUNCTION_FAILED,
  TetherFunction,
  type CancelOnOption,
  type CatchUp,
  type CronTriggerOption,
  type EventTriggerOption,
  type FunctionContext,
  type FunctionFailedData,
  type FunctionOptions,
  type Handler,
  type TimeoutsOption,
  type TriggerOption,
} from "./function.js";
export type { FunctionInfo, ListRunsOptions, RunsClient, FunctionsClient, WaitRunOptions } from "./admin.js";
export type { Logger } from "./logger.js";
export type {
  CronTick,
  ErrorInfo,
  HistoryEntry,
  Run,
  RunPage,
  RunStatus,
  SendResult,
  SkippedRun,
  StepInfo,
} from "./models.js";
export type { InvokeOptions, Step, WaitForEventOptions } from "./step.js";
export type {
  AnyData,
  EventPayload,
  EventSchemas,
  Jsonify,
  TetherEvent,
  UntypedEvents,
} from "./types.js";
export { VERSION } from "./version.js";
export { Worker, type WorkerOptions } from "./worker.js";
