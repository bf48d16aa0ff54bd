/**
 * The worker: one stream to the control plane, many executions at once.
 *
 * Outcomes are sent in batches as they happen (everything emitted in one turn
 * of the event loop goes in one frame); the control plane acknowledges them
 * once durable. When the stream breaks, executions keep running and their
 * outcomes wait; the worker reconnects at once and then with jittered
 * exponential backoff, re-announces what it holds in its Hello and sends every
 * unacknowledged outcome again (the control plane re-grants the leases still
 * theirs and cancels the rest). Disconnected for a whole lease timeout, it
 * drops them: their runs have gone to another worker. `drain()` (SIGTERM)
 * stops taking work, lets what is running finish and be acknowledged, then
 * disconnects.
 */

import { hostname } from "node:os";

import type { ClientDuplexStream } from "@grpc/grpc-js";

import type { Connection } from "./connection.js";
import {
  InvalidArgumentError,
  PermissionDeniedError,
  UnauthenticatedError,
  WorkerRejectedError,
  errorMessage,
} from "./errors.js";
import { DEFAULT_LIMITS, Execution, type Limits, errorInfo } from "./execution.js";
import type { TetherFunction } from "./function.js";
import type { Logger } from "./logger.js";
import { PROTOCOL_VERSION, VERSION } from "./version.js";
import type { Event as WireEvent } from "./gen/tether/v1/common.js";
import {
  type Acks,
  type Execute,
  type Hello,
  type Outcome,
  RejectCode,
  type ServerFrame,
  type WorkerFrame,
  WorkerServiceClient,
} from "./gen/tether/v1/worker_service.js";

const RECONNECT_BASE_MS = 100;
const RECONNECT_MAX_MS = 5000;
/** While it holds executions the worker retries sooner: their leases wait only a lease timeout. */
const RECONNECT_MAX_HOLDING_MS = 500;
/** Until a Welcome says otherwise (`Welcome.lease_timeout_ms`). */
const DEFAULT_LEASE_TIMEOUT_MS = 15_000;
/** The most executions a Hello may re-announce; any more are not re-granted (the worker stops them). */
const MAX_HELD = 10_000;
/** A worker that hears nothing for this many heartbeat intervals treats the stream as dead. */
const SILENCE_INTERVALS = 3;

/** How a worker runs. */
export interface WorkerOptions {
  /** The most executions it runs at once (default 100). */
  capacity?: number;
  /** Identifies this process across reconnects (default `<hostname>-<pid>`). */
  instanceId?: string;
}

/** What a worker needs of its app's client. */
export interface WorkerApp {
  readonly appId: string;
  readonly connection: () => Connection;
  readonly log: Logger;
  /** Sends the events of `step.sendEvent`; returns their ids. */
  readonly sendEvents: (events: WireEvent[]) => Promise<string[]>;
}

class ConnectionLost extends Error {
  override name = "ConnectionLost";
}

const EOF = Symbol("end of stream");
const SILENT = Symbol("silence");

/** Reads a stream's frames one at a time; errors and the end come out of `next()`. */
class FrameReader {
  readonly #frames: ServerFrame[] = [];
  #failure: Error | undefined;
  #ended: boolean = false;
  #wake: (() => void) | undefined;

  constructor(call: ClientDuplexStream<WorkerFrame, ServerFrame>) {
    call.on("data", (frame: ServerFrame) => {
      this.#frames.push(frame);
      this.#notify();
    });
    call.on("error", (error: Error) => {
      this.#failure ??= error;
      this.#notify();
    });
    call.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** The next frame, `EOF`, or `SILENT` after `silenceMs` without one; throws the stream's error. */
  async next(silenceMs?: number): Promise<ServerFrame | typeof EOF | typeof SILENT> {
    let timer: NodeJS.Timeout | undefined;
    const state = { silent: false };
    try {
      for (;;) {
        const frame = this.#frames.shift();
        if (frame !== undefined) return frame;
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#ended) return EOF;
        if (state.silent) return SILENT;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          if (silenceMs !== undefined && timer === undefined) {
            timer = setTimeout(() => {
              state.silent = true;
              this.#notify();
            }, silenceMs);
          }
        });
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A promise with its resolver. */
class Latch {
  resolved = false;
  readonly promise: Promise<void>;
  #resolve!: () => void;

  constructor() {
    this.promise = new Promise<void>((resolve) => {
      this.#resolve = resolve;
    });
  }

  resolve(): void {
    this.resolved = true;
    this.#resolve();
  }
}

/** Serves an app's functions over one stream, reconnecting as needed. */
export class Worker {
  readonly capacity: number;
  readonly instanceId: string;
  /** Outcomes acknowledged as durable since start (for tests and benchmarks). */
  acked = 0;

  readonly #app: WorkerApp;
  readonly #functions: ReadonlyMap<string, TetherFunction>;
  readonly #executions = new Map<string, Execution>();
  /** Outcomes not yet sent; and those sent on this stream, not yet acknowledged (in seq order). */
  #outbox: Outcome[] = [];
  #unacked: Outcome[] = [];
  #control: WorkerFrame[] = [];
  #flushScheduled = false;
  #call: ClientDuplexStream<WorkerFrame, ServerFrame> | undefined;
  #nextSeq = 1;
  #leaseTimeoutMs = DEFAULT_LEASE_TIMEOUT_MS;
  #heartbeatIntervalMs = 3000;
  /** When the control plane was last heard from: its leases were extended no earlier than an interval before. */
  #lastHeard = 0;
  /** Drops what the worker holds once disconnected for a lease timeout. */
  #giveUp: NodeJS.Timeout | undefined;
  #limits: Limits = DEFAULT_LIMITS;
  #draining = false;
  #welcomed = false;
  #connected = false;
  readonly #stopped = new Latch();
  #settled = new Latch();
  #connectedWaiters: (() => void)[] = [];

  constructor(app: WorkerApp, functions: readonly TetherFunction[], options: WorkerOptions = {}) {
    const capacity = options.capacity ?? 100;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`capacity must be an integer of at least 1, not ${capacity}`);
    }
    if (functions.length === 0) throw new RangeError(`app '${app.appId}' has no functions to serve`);
    this.#app = app;
    this.#functions = new Map(functions.map((f) => [f.id, f]));
    this.capacity = capacity;
    this.instanceId = options.instanceId ?? `${hostname()}-${process.pid}`;
  }

  /** Ids of the runs this worker is executing now. */
  get executing(): Set<string> {
    return new Set([...this.#executions.values()].map((x) => x.runId));
  }

  /** True while a stream is open and welcomed. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Resolves once the worker is connected (at once if it is). */
  async untilConnected(): Promise<void> {
    if (this.#connected) return;
    await new Promise<void>((resolve) => this.#connectedWaiters.push(resolve));
  }

  /** Finishes in-flight work, takes no more, then stops. */
  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#app.log.info(`draining: finishing ${this.#executions.size} execution(s)`);
    this.#control.push({ frame: { $case: "drain", value: {} } });
    this.#scheduleFlush();
    this.#checkSettled();
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Stops now; in-flight executions are dropped and will run elsewhere. */
  stop(): void {
    this.#stopped.resolve();
  }

  /** Serves until drained or stopped, reconnecting as needed. */
  async run(): Promise<void> {
    let attempt = 0;
    try {
      while (!this.#stopped.resolved) {
        try {
          await this.#session();
          attempt = 0;
          if (this.#draining) return;
        } catch (error) {
          if (
            error instanceof WorkerRejectedError ||
            error instanceof UnauthenticatedError ||
            error instanceof PermissionDeniedError
          )
            throw error;
          // What was sent broke the protocol: sending it again would too. Start clean.
          if (error instanceof InvalidArgumentError) this.#dropHeld();
          if (this.#draining && !this.#holdsWork()) return;
          if (this.#welcomed) {
            // The connection was healthy before it broke: start over.
            attempt = 0;
            this.#welcomed = false;
            this.#armGiveUp();
          }
          const longest = this.#holdsWork() ? RECONNECT_MAX_HOLDING_MS : RECONNECT_MAX_MS;
          const ceiling = Math.min(longest, RECONNECT_BASE_MS * 2 ** attempt);
          const delay = RECONNECT_BASE_MS / 2 + Math.random() * (ceiling - RECONNECT_BASE_MS / 2);
          attempt += 1;
          this.#app.log.warn(
            `connection to ${this.#app.connection().address} lost (${describe(error)}); ` +
              `reconnecting in ${(delay / 1000).toFixed(2)} s`,
          );
          await this.#sleep(delay);
        }
      }
    } finally {
      this.#dropHeld();
    }
  }

  async #sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
      this.#stopped.promise,
    ]);
    clearTimeout(timer);
  }

  // -- one connection ----------------------------------------------------------------

  async #session(): Promise<void> {
    const connection = this.#app.connection();
    const client = new WorkerServiceClient(connection.address, connection.credentials(), connection.channelOptions(true));
    const call = client.connect(connection.metadata());
    const reader = new FrameReader(call);
    let heartbeat: NodeJS.Timeout | undefined;
    this.#settled = new Latch();
    try {
      call.write({ frame: { $case: "hello", value: this.#hello() } });
      const first = await Promise.race([reader.next(), this.#stopped.promise.then((): typeof EOF => EOF)]);
      if (this.#stopped.resolved) return;
      if (first === EOF || first === SILENT) {
        throw new ConnectionLost("the control plane closed the stream before Welcome");
      }
      if (first.frame?.$case === "rejected") {
        const rejected = first.frame.value;
        if (rejected.code === RejectCode.REJECT_CODE_SHUTTING_DOWN) throw new ConnectionLost(rejected.reason);
        throw new WorkerRejectedError(rejected.reason);
      }
      if (first.frame?.$case !== "welcome") {
        throw new ConnectionLost(`the control plane's first frame was ${first.frame?.$case ?? "empty"}, not welcome`);
      }
      const welcome = first.frame.value;
      const limits = welcome.limits;
      this.#limits = {
        maxStepOutputBytes: limits?.maxStepOutputBytes || DEFAULT_LIMITS.maxStepOutputBytes,
        maxRunStateBytes: limits?.maxRunStateBytes || DEFAULT_LIMITS.maxRunStateBytes,
        maxStepsPerRun: limits?.maxStepsPerRun || DEFAULT_LIMITS.maxStepsPerRun,
        maxFrameBytes: limits?.maxFrameBytes || DEFAULT_LIMITS.maxFrameBytes,
      };
      const intervalMs = welcome.heartbeatIntervalMs || 3000;
      this.#leaseTimeoutMs = welcome.leaseTimeoutMs || DEFAULT_LEASE_TIMEOUT_MS;
      this.#heartbeatIntervalMs = intervalMs;
      this.#lastHeard = performance.now();
      clearTimeout(this.#giveUp);
      this.#giveUp = undefined;
      this.#app.log.info(
        `connected to ${connection.address} as app '${this.#app.appId}' (${this.#functions.size} ` +
          `function(s), capacity ${this.capacity}, session ${welcome.sessionId})`,
      );
      // A new stream starts a new sequence of outcomes; what the last one left
      // unacknowledged goes first.
      this.#nextSeq = 1;
      this.#call = call;
      if (this.#outbox.length > 0) this.#scheduleFlush();
      this.#welcomed = true;
      this.#connected = true;
      for (const wake of this.#connectedWaiters.splice(0)) wake();
      heartbeat = setInterval(() => {
        this.#control.push({
          frame: { $case: "heartbeat", value: { executionIds: [...this.#executions.keys()] } },
        });
        this.#scheduleFlush();
      }, intervalMs);
      if (this.#draining) {
        this.#control.push({ frame: { $case: "drain", value: {} } });
        this.#scheduleFlush();
      }
      this.#checkSettled();
      const ended = await Promise.race([
        this.#read(reader, intervalMs * SILENCE_INTERVALS),
        this.#stopped.promise.then(() => "stopped" as const),
        this.#settled.promise.then(() => "drained" as const),
      ]);
      if (ended === "drained") {
        this.#flush();
        call.end();
        this.#app.log.info("drained; disconnecting");
      }
    } catch (error) {
      throw connection.translate(error);
    } finally {
      clearInterval(heartbeat);
      this.#connected = false;
      this.#call = undefined;
      // Executions go on; their outcomes wait for the next stream, after those
      // this one did not acknowledge.
      this.#outbox = [...this.#unacked, ...this.#outbox];
      this.#unacked = [];
      this.#control = [];
      call.cancel();
      client.close();
    }
  }

  #hello(): Hello {
    return {
      protocolVersion: PROTOCOL_VERSION,
      appId: this.#app.appId,
      instanceId: this.instanceId,
      sdkLanguage: "typescript",
      sdkVersion: VERSION,
      functions: [...this.#functions.values()].map((f) => f.definition),
      capacity: this.capacity,
      held: [...this.#held()].slice(0, MAX_HELD).map(([executionId, runId]) => ({ executionId, runId })),
    };
  }

  /** The executions this worker holds (execution id -> run id): running, or with outcomes not yet acknowledged. */
  #held(): Map<string, string> {
    const held = new Map(this.#outbox.map((o) => [o.executionId, o.runId]));
    for (const [executionId, execution] of this.#executions) held.set(executionId, execution.runId);
    return held;
  }

  #holdsWork(): boolean {
    return this.#executions.size > 0 || this.#outbox.length > 0 || this.#unacked.length > 0;
  }

  /** Handles frames until the stream ends, fails or falls silent (it never returns normally). */
  async #read(reader: FrameReader, silenceMs: number): Promise<never> {
    for (;;) {
      const frame = await reader.next(silenceMs);
      if (frame === SILENT) {
        throw new ConnectionLost(`no word from the control plane for ${Math.round(silenceMs / 1000)} s`);
      }
      if (frame === EOF) throw new ConnectionLost("the control plane closed the stream");
      this.#lastHeard = performance.now();
      switch (frame.frame?.$case) {
        case "dispatch":
          for (const execute of frame.frame.value.executions) this.#start(execute);
          break;
        case "acks":
          this.#onAcks(frame.frame.value);
          break;
        case "cancel": {
          const cancel = frame.frame.value;
          this.#cancel(cancel.executionId, cancel.reason, cancel.runCancelled);
          if (cancel.runCancelled) {
            // Nothing of it starts from here on; the control plane waits for this.
            this.#control.push({ frame: { $case: "cancelAck", value: { executionId: cancel.executionId } } });
            this.#scheduleFlush();
          }
          break;
        }
        case "rejected":
          throw new WorkerRejectedError(frame.frame.value.reason);
        default:
          break; // Ping, and anything newer: a sign of life.
      }
    }
  }

  // -- sending ---------------------------------------------------------------------------

  #emit(outcome: Outcome): void {
    this.#outbox.push(outcome); // numbered when sent
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flush();
    });
  }

  #flush(): void {
    this.#flushScheduled = false;
    const call = this.#call;
    if (call === undefined) return;
    const control = this.#control;
    this.#control = [];
    for (const frame of control) call.write(frame);
    const outcomes = this.#outbox;
    this.#outbox = [];
    for (const outcome of outcomes) {
      outcome.seq = this.#nextSeq;
      this.#nextSeq += 1;
    }
    // Unacknowledged from the moment they are handed to the stream: sent again if it breaks.
    this.#unacked.push(...outcomes);
    for (const chunk of chunks(outcomes, this.#limits.maxFrameBytes)) {
      call.write({ frame: { $case: "outcomes", value: { outcomes: chunk } } });
    }
    this.#checkSettled();
  }

  // -- executions ----------------------------------------------------------------------

  #start(execute: Execute): void {
    const fn = this.#functions.get(execute.functionId);
    if (fn === undefined) {
      const error = new Error(`function '${execute.functionId}' is not served by this worker`);
      error.name = "LookupError";
      this.#emit({
        seq: 0,
        executionId: execute.executionId,
        runId: execute.runId,
        kind: { $case: "runFailed", value: { error: errorInfo(error), retriable: true, retryDelayMs: 0 } },
      });
      return;
    }
    const execution = new Execution(fn, execute, {
      emit: (outcome) => {
        this.#emit(outcome);
      },
      limits: this.#limits,
      send: this.#app.sendEvents,
      log: this.#app.log,
    });
    this.#executions.set(execute.executionId, execution);
    execution.run().then(
      () => {
        this.#finished(execute.executionId, undefined);
      },
      (error: unknown) => {
        this.#finished(execute.executionId, error);
      },
    );
  }

  #finished(executionId: string, crash: unknown): void {
    const execution = this.#executions.get(executionId);
    this.#executions.delete(executionId);
    if (crash !== undefined) {
      this.#app.log.error(`execution ${executionId} crashed`, crash);
      if (execution !== undefined && !execution.stopped) {
        // Report it rather than leave the run to be re-executed forever.
        execution.emit({ $case: "runFailed", value: { error: errorInfo(crash), retriable: false, retryDelayMs: 0 } });
        execution.finished = true;
      }
    }
    this.#checkSettled();
  }

  #cancel(executionId: string, reason: string, letStepFinish: boolean): void {
    const execution = this.#executions.get(executionId);
    if (execution === undefined) return;
    this.#executions.delete(executionId);
    this.#app.log.info(`run ${execution.runId}: execution stopped: ${reason}`);
    if (letStepFinish) execution.cancel();
    else {
      execution.drop();
      this.#outbox = this.#outbox.filter((o) => o.executionId !== executionId);
    }
    this.#checkSettled();
  }

  #onAcks(acks: Acks): void {
    let done = 0;
    while (done < this.#unacked.length && (this.#unacked[done]?.seq ?? Infinity) <= acks.throughSeq) done += 1;
    this.#unacked.splice(0, done);
    this.acked += done;
    for (const refusal of acks.refused) {
      this.#cancel(refusal.executionId, `outcome refused: ${refusal.reason}`, false);
    }
    this.#checkSettled();
  }

  #checkSettled(): void {
    if (this.#draining && !this.#holdsWork() && !this.#flushScheduled) {
      this.#settled.resolve();
    }
  }

  /** Drops what the worker holds unless a stream is back before its leases can have expired. */
  #armGiveUp(): void {
    if (this.#giveUp !== undefined || !this.#holdsWork()) return;
    const expiry = this.#lastHeard - this.#heartbeatIntervalMs + this.#leaseTimeoutMs;
    this.#giveUp = setTimeout(() => {
      this.#giveUp = undefined;
      if (this.#connected) return;
      this.#app.log.warn(
        `no control plane for the lease timeout (${Math.round(this.#leaseTimeoutMs / 1000)} s): dropping ` +
          `${this.#executions.size} execution(s); their runs go to another worker`,
      );
      this.#dropHeld();
    }, Math.max(0, expiry - performance.now()));
    this.#giveUp.unref();
  }

  /** Stops every execution and forgets every outcome not yet acknowledged. */
  #dropHeld(): void {
    for (const execution of this.#executions.values()) execution.drop();
    this.#executions.clear();
    this.#outbox = [];
    this.#unacked = [];
    clearTimeout(this.#giveUp);
    this.#giveUp = undefined;
    this.#checkSettled();
  }
}

/** Splits a batch so that no frame exceeds `maxBytes` (one outcome may). */
function chunks(outcomes: Outcome[], maxBytes: number): Outcome[][] {
  if (outcomes.length === 0) return [];
  const result: Outcome[][] = [[]];
  const budget = Math.max(1024, maxBytes - 1024);
  let size = 0;
  for (const outcome of outcomes) {
    const outcomeSize = estimatedSize(outcome);
    const current = result[result.length - 1] ?? [];
    if (current.length > 0 && size + outcomeSize > budget) {
      result.push([outcome]);
      size = outcomeSize;
    } else {
      current.push(outcome);
      size += outcomeSize;
    }
  }
  return result;
}

/** An upper bound of an outcome's encoded size, without encoding it. */
function estimatedSize(outcome: Outcome): number {
  const kind = outcome.kind;
  let size = 128 + outcome.executionId.length + outcome.runId.length;
  switch (kind?.$case) {
    case "stepCompleted":
      size += kind.value.output.length + kind.value.name.length * 3;
      break;
    case "stepFailed":
    case "runFailed": {
      const error = kind.value.error;
      size += (error?.message.length ?? 0) * 3 + (error?.stack.length ?? 0) * 3 + (error?.name.length ?? 0) * 3;
      break;
    }
    case "runCompleted":
      size += kind.value.output.length;
      break;
    case "suspended":
      for (const wait of kind.value.waits) {
        size += 192 + wait.name.length * 3;
        if (wait.kind?.$case === "invoke") size += wait.kind.value.data.length;
        if (wait.kind?.$case === "waitForEvent") size += wait.kind.value.ifExpression.length * 3;
      }
      break;
    case "nonDeterminism":
      size += kind.value.message.length * 3 + kind.value.newSteps.join("").length * 3 + kind.value.unreachedStepIds.length * 48;
      break;
    default:
      break;
  }
  return size;
}

function describe(error: unknown): string {
  const message = errorMessage(error);
  return message === "" ? (error instanceof Error ? error.name : String(error)) : message;
}
