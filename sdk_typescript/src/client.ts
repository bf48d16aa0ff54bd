/** `Tether`: the client an app creates once, to define, serve and send. */

import { FunctionsClient, RunsClient } from "./admin.js";
import { Connection, type ConnectionOptions } from "./connection.js";
import { eventToWire, sendResultFromWire } from "./convert.js";
import {
  ConfigError,
  InvalidArgumentError,
  PermissionDeniedError,
  UnauthenticatedError,
  WorkerRejectedError,
} from "./errors.js";
import {
  type FunctionOptions,
  type FunctionOutput,
  type Handler,
  TetherFunction,
  type TriggeredEvent,
  checkFunctionId,
  failureDefinition,
  functionDefinition,
} from "./function.js";
import { type Logger, defaultLogger } from "./logger.js";
import type { SendResult } from "./models.js";
import { addTraceContext, configureFromEnvironment, shutdownTelemetry } from "./telemetry.js";
import type { EventSchemas, PayloadFor, TetherEvent, TriggerName, UntypedEvents } from "./types.js";
import { Worker, type WorkerOptions } from "./worker.js";
import type { Event as WireEvent } from "./gen/tether/v1/common.js";
import { EventServiceClient } from "./gen/tether/v1/event_service.js";

/** How to create a client. */
export interface TetherOptions extends ConnectionOptions {
  /** The app's id: functions are unique within it. */
  appId: string;
  /** Where the SDK logs, and what `ctx.logger` writes to (default: `console`). */
  logger?: Logger;
}

/** Options of `tether.serve()`. */
export interface ServeOptions extends WorkerOptions {
  /** Serve only these functions (default: all of the app's). */
  functions?: readonly TetherFunction[];
  /** How long a drain may take before the worker stops anyway (default 30 s). */
  drainTimeoutMs?: number;
}

/**
 * One per app:
 *
 * ```ts
 * const tether = new Tether({ appId: "shop" });
 * export const onboarding = tether.createFunction(
 *   { id: "onboarding-flow", event: "app/user.signup" },
 *   async ({ event, step }) => { ... },
 * );
 * await tether.serve();
 * ```
 *
 * The address defaults to `TETHER_ADDRESS`, then `localhost:4770`; pass
 * `Tether<Events>` an event schema to type every `event.data`.
 */
export class Tether<TEvents extends EventSchemas = UntypedEvents> {
  readonly appId: string;
  readonly logger: Logger;
  /** Admin from code: `await tether.runs.get(runId)`. */
  readonly runs: RunsClient;
  /** Admin from code: `await tether.functions.pause("sync-accounts")`. */
  readonly functions: FunctionsClient;

  #connection: Connection;
  readonly #functions = new Map<string, TetherFunction>();
  #events: EventServiceClient | undefined;

  constructor(options: TetherOptions) {
    if (typeof options !== "object" || typeof options.appId !== "string" || options.appId === "") {
      throw new ConfigError("Tether needs an appId, like new Tether({ appId: 'shop' })");
    }
    this.appId = options.appId;
    this.logger = options.logger ?? defaultLogger();
    this.#connection = new Connection(options);
    const app = { appId: this.appId, connection: () => this.#connection };
    this.runs = new RunsClient(app);
    this.functions = new FunctionsClient(app);
  }

  /** The control plane's address. */
  get address(): string {
    return this.#connection.address;
  }

  /** Points this client at another control plane (`TestEnvironment` uses it). */
  setAddress(address: string): void {
    this.close();
    this.#connection = this.#connection.at(address);
  }

  // -- defining functions --------------------------------------------------------------

  /**
   * Declares a durable function. Triggers: `event` (with `if`), `cron` (with
   * `tz`, `catchUp`), or `triggers: [...]` for several; none makes it
   * invoke-only. Options: `retries`, `concurrency`, `throttle`, `rateLimit`,
   * `debounce`, `priority`, `batchEvents`, `singleton`, `idempotency`,
   * `cancelOn`, `timeouts`, `onFailure`. Throws ConfigError naming a bad option.
   */
  createFunction<TTrigger extends TriggerName<TEvents> = never, TOutput = unknown>(
    options: FunctionOptions<TEvents, TTrigger>,
    handler: Handler<TriggeredEvent<TEvents, TTrigger>, TEvents, TOutput>,
  ): TetherFunction<FunctionOutput<TOutput>> {
    const definition = functionDefinition(this.appId, options as unknown as FunctionOptions<EventSchemas, string>);
    if (typeof handler !== "function") {
      throw new ConfigError(`function '${definition.id}' needs a handler: async ({ event, step }) => { ... }`);
    }
    const failure =
      options.onFailure === undefined ? undefined : failureDefinition(this.appId, definition);
    if (failure !== undefined) {
      checkFunctionId(failure.id);
      if (typeof options.onFailure !== "function") {
        throw new ConfigError(`function '${failure.id}' needs a handler: async ({ event, step }) => { ... }`);
      }
    }
    for (const taken of [definition.id, ...(failure === undefined ? [] : [failure.id])]) {
      if (this.#functions.has(taken)) {
        throw new ConfigError(
          `duplicate function id '${taken}' in app '${this.appId}': each function of an app needs its own id`,
        );
      }
    }
    const fn = new TetherFunction<FunctionOutput<TOutput>>(
      this.appId,
      definition,
      handler as unknown as Handler<TetherEvent, EventSchemas, unknown>,
      this.logger,
    );
    this.#functions.set(fn.id, fn);
    if (failure !== undefined && options.onFailure !== undefined) {
      const onFailure = options.onFailure as unknown as Handler<TetherEvent, EventSchemas, unknown>;
      this.#functions.set(failure.id, new TetherFunction(this.appId, failure, onFailure, this.logger));
    }
    return fn;
  }

  /** The functions declared on this client, in declaration order. */
  get registeredFunctions(): TetherFunction[] {
    return [...this.#functions.values()];
  }

  // -- sending events ---------------------------------------------------------------------

  /** Sends one event or a list: `await tether.send({ name: "app/x", data: {...} })`. */
  async send(events: PayloadFor<TEvents> | readonly PayloadFor<TEvents>[]): Promise<SendResult[]> {
    const items: readonly PayloadFor<TEvents>[] = Array.isArray(events)
      ? (events as readonly PayloadFor<TEvents>[])
      : [events as PayloadFor<TEvents>];
    if (items.length === 0) throw new InvalidArgumentError("no events to send");
    return this.#send(items.map((item, index) => eventToWire(item, index)));
  }

  async #send(events: WireEvent[]): Promise<SendResult[]> {
    const connection = this.#connection;
    this.#events ??= new EventServiceClient(connection.address, connection.credentials(), connection.channelOptions());
    const client = this.#events;
    const metadata = connection.metadata();
    // The current span goes along: the event's span is a child of it.
    addTraceContext(metadata);
    const response = await connection.unary(client.send.bind(client), { events }, metadata);
    return response.results.map(sendResultFromWire);
  }

  // -- serving -------------------------------------------------------------------------------

  /** A worker for this app's functions (or `functions`), to run and stop yourself. */
  worker(options: ServeOptions = {}): Worker {
    return new Worker(
      {
        appId: this.appId,
        connection: () => this.#connection,
        log: this.logger,
        sendEvents: async (events) => (await this.#send(events)).map((r) => r.eventId),
      },
      options.functions ?? this.registeredFunctions,
      options,
    );
  }

  /**
   * Serves this app's functions until SIGTERM or SIGINT: the first signal
   * drains (finishes in-flight work, takes no more), a second one stops at
   * once. Exports spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
   */
  async serve(options: ServeOptions = {}): Promise<void> {
    await configureFromEnvironment(`tether-worker-${this.appId}`);
    const worker = this.worker(options);
    const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    let deadline: NodeJS.Timeout | undefined;
    const onSignal = (): void => {
      if (worker.draining) {
        this.logger.warn("second signal: stopping now");
        worker.stop();
        return;
      }
      worker.drain();
      deadline = setTimeout(() => {
        worker.stop();
      }, drainTimeoutMs);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      await worker.run();
    } catch (error) {
      if (
        error instanceof WorkerRejectedError ||
        error instanceof UnauthenticatedError ||
        error instanceof PermissionDeniedError
      ) {
        this.logger.error(
          `the control plane ${error instanceof WorkerRejectedError ? "refused this worker" : "refused the API key"}: ${error.message}`,
        );
      }
      throw error;
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      clearTimeout(deadline);
      this.close();
      await shutdownTelemetry();
    }
  }

  /** Closes this client's connections (a later call opens new ones). */
  close(): void {
    this.#events?.close();
    this.#events = undefined;
    this.runs.close();
    this.functions.close();
  }
}
