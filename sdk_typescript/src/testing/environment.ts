/** A control plane subprocess on a virtual clock, plus an in-process worker. */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { Tether } from "../client.js";
import { type Duration, toMilliseconds } from "../durations.js";
import type { TetherFunction } from "../function.js";
import type { EventSchemas } from "../types.js";
import type { Worker } from "../worker.js";
import { ClockServiceClient, type GetTimeResponse } from "../gen/tether/v1/clock_service.js";
import { Connection } from "../connection.js";
import { RunServiceClient } from "../gen/tether/v1/run_service.js";

/** Options of `TestEnvironment.start`. */
export interface TestEnvironmentOptions {
  /** The functions the in-process worker serves (default: all of the app's; `[]`: no worker). */
  functions?: readonly TetherFunction[];
  /** `"virtual"` (default) jumps to the next timer whenever nothing runs. */
  clock?: "virtual" | "system";
  /** The store (default: SQLite in a temporary directory). */
  dbUrl?: string;
  /** The worker's capacity (default 100). */
  capacity?: number;
  /** How long the control plane may take to start (default 30 s). */
  startupTimeoutMs?: number;
  /** More arguments for `tether server`. */
  serverArgs?: readonly string[];
  /**
   * How to run the Tether CLI (default: `TETHER_CLI`, split on spaces, else
   * `tether` on the PATH).
   */
  command?: readonly string[];
}

/**
 * `const env = await TestEnvironment.start(tether)`: the app's client points at
 * a fresh control plane (SQLite in a temporary directory, virtual clock) and a
 * worker serves the app's functions until `await env.stop()`.
 *
 * The clock skips ahead to the next sleep, retry or timeout whenever nothing
 * runs, but never to a cron tick (a daily schedule would keep it running
 * forever): fire a cron function with `advanceToNextTick`, or move the clock
 * with `advance` / `advanceTo`.
 */
export class TestEnvironment<TEvents extends EventSchemas = EventSchemas> {
  readonly #tether: Tether<TEvents>;
  readonly #dir: string;
  readonly #process: ChildProcess;
  readonly #previousAddress: string;
  readonly #connection: Connection;
  readonly #clock: ClockServiceClient;
  readonly #runService: RunServiceClient;
  readonly #workerDone: Promise<unknown> | undefined;
  /** The in-process worker, when there is one. */
  readonly worker: Worker | undefined;
  /** The control plane's gRPC address. */
  readonly address: string;

  private constructor(
    tether: Tether<TEvents>,
    dir: string,
    child: ChildProcess,
    address: string,
    worker: Worker | undefined,
  ) {
    this.#tether = tether;
    this.#dir = dir;
    this.#process = child;
    this.address = address;
    this.#previousAddress = tether.address;
    tether.setAddress(address);
    this.#connection = new Connection({ address, tls: false });
    this.#clock = new ClockServiceClient(address, this.#connection.credentials());
    this.#runService = new RunServiceClient(address, this.#connection.credentials());
    this.worker = worker;
    this.#workerDone = worker?.run().catch((error: unknown) => error);
  }

  /** The control plane's log, for when a test needs to know why. */
  get logFile(): string {
    return join(this.#dir, "control-plane.log");
  }

  /** Starts a control plane and a worker for `tether`'s functions. */
  static async start<TEvents extends EventSchemas>(
    tether: Tether<TEvents>,
    options: TestEnvironmentOptions = {},
  ): Promise<TestEnvironment<TEvents>> {
    const dir = mkdtempSync(join(tmpdir(), "tether-test-"));
    const ready = join(dir, "ready.json");
    const logFile = join(dir, "control-plane.log");
    const command = options.command ?? (process.env.TETHER_CLI ?? "tether").split(" ").filter((part) => part !== "");
    const [program = "tether", ...prefix] = command;
    const args = [
      ...prefix,
      "server",
      "--db",
      options.dbUrl ?? `sqlite:///${join(dir, "tether.db")}`,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--clock",
      options.clock ?? "virtual",
      "--ready-file",
      ready,
      "--no-http",
      "--log-level",
      "info",
      // Time skips by days here: retention would delete what a test looks at.
      "--retention",
      "forever",
      ...(options.serverArgs ?? []),
    ];
    const log = openSync(logFile, "w");
    const child = spawn(program, args, { stdio: ["ignore", log, log] });
    closeSync(log);
    const startupTimeoutMs = options.startupTimeoutMs ?? 30_000;
    let port: number;
    try {
      port = await waitForReady(child, ready, logFile, startupTimeoutMs, program);
    } catch (error) {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    const functions = options.functions ?? tether.registeredFunctions;
    const worker =
      functions.length > 0
        ? tether.worker({ functions, ...(options.capacity === undefined ? {} : { capacity: options.capacity }) })
        : undefined;
    const env = new TestEnvironment(tether, dir, child, `127.0.0.1:${port}`, worker);
    if (worker !== undefined) {
      const failed = env.#workerDone?.then((error) => {
        throw new Error("the worker stopped before it connected", { cause: error });
      });
      try {
        await withTimeout(Promise.race([worker.untilConnected(), failed]), startupTimeoutMs, "the worker to connect");
      } catch (error) {
        await env.stop();
        throw error;
      }
    }
    return env;
  }

  /** Stops the worker and the control plane and removes the temporary directory. */
  async stop(): Promise<void> {
    this.worker?.stop();
    await withTimeout(this.#workerDone ?? Promise.resolve(), 10_000, "the worker to stop").catch(() => undefined);
    this.#clock.close();
    this.#runService.close();
    this.#tether.close();
    this.#tether.setAddress(this.#previousAddress);
    if (this.#process.exitCode === null && this.#process.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.#process.once("exit", () => { resolve(); }));
      this.#process.kill("SIGTERM");
      await withTimeout(exited, 10_000, "the control plane to stop").catch(() => {
        this.#process.kill("SIGKILL");
      });
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  // -- the virtual clock ---------------------------------------------------------------

  async #time(method: "getTime" | "advance" | "setAutoSkip", request: object): Promise<GetTimeResponse> {
    const client = this.#clock;
    const call = client[method].bind(client) as (
      request: object,
      metadata: ReturnType<Connection["metadata"]>,
      options: object,
      callback: (error: import("@grpc/grpc-js").ServiceError | null, response: GetTimeResponse) => void,
    ) => import("@grpc/grpc-js").ClientUnaryCall;
    return this.#connection.unary(call, request);
  }

  /** The control plane's current (virtual) time. */
  async now(): Promise<Date> {
    return new Date((await this.#time("getTime", {})).nowMs);
  }

  /** Moves the virtual clock forward; timers that fall due fire. */
  async advance(duration: Duration): Promise<Date> {
    return new Date((await this.#time("advance", { byMs: toMilliseconds(duration) })).nowMs);
  }

  /** Moves the virtual clock forward to `when`; a time already passed leaves it where it is. */
  async advanceTo(when: Date): Promise<Date> {
    const now = (await this.#time("getTime", {})).nowMs;
    const target = when.getTime();
    if (target <= now) return new Date(now);
    return this.advance(target - now);
  }

  /** When one of the app's functions fires next by its cron triggers; null without one. */
  async nextTick(fn: TetherFunction | string): Promise<Date | null> {
    const functionId = typeof fn === "string" ? fn : fn.id;
    const client = this.#runService;
    const response = await this.#connection.unary(client.listFunctions.bind(client), {
      appId: this.#tether.appId,
    });
    const info = response.functions.find((f) => f.definition?.id === functionId);
    if (info === undefined) throw new RangeError(`function '${functionId}' is not registered with the control plane`);
    const fires = info.nextFireMs.filter((ms) => ms > 0);
    return fires.length === 0 ? null : new Date(Math.min(...fires));
  }

  /** Moves the clock to the function's next cron tick, which starts a run; returns the tick. */
  async advanceToNextTick(fn: TetherFunction | string): Promise<Date> {
    const tick = await this.nextTick(fn);
    if (tick === null) throw new RangeError(`function '${typeof fn === "string" ? fn : fn.id}' has no cron trigger`);
    await this.advanceTo(tick);
    return tick;
  }

  /** Turns off to stop the clock jumping ahead to the next timer; advance it by hand. */
  async setAutoSkip(enabled: boolean): Promise<void> {
    await this.#time("setAutoSkip", { enabled });
  }

  /**
   * Runs `block` with the clock held: it does not jump ahead to the next timer
   * (it moves only at its real pace and by `advance`), so a test can deliver
   * an event to a run waiting for it before the wait times out.
   */
  async holdClock<T>(block: () => Promise<T>): Promise<T> {
    const previous = await this.#time("getTime", {});
    await this.setAutoSkip(false);
    try {
      return await block();
    } finally {
      await this.setAutoSkip(previous.autoSkip);
    }
  }
}

async function waitForReady(
  child: ChildProcess,
  ready: string,
  logFile: string,
  timeoutMs: number,
  program: string,
): Promise<number> {
  let spawnError: Error | undefined;
  child.once("error", (error) => {
    spawnError = error;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(ready)) {
      try {
        return (JSON.parse(readFileSync(ready, "utf8")) as { grpc_port: number }).grpc_port;
      } catch {
        // The file is being written: read it again.
      }
    }
    if (spawnError !== undefined) {
      throw new Error(
        `could not start the control plane with '${program}' (${spawnError.message}): install the ` +
          "Tether CLI, or set TETHER_CLI to the command that runs it",
      );
    }
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const exit = child.exitCode === null ? "" : ` (exit code ${child.exitCode})`;
  const log = existsSync(logFile) ? readFileSync(logFile, "utf8").slice(-4000) : "";
  throw new Error(`the control plane did not start${exit}; its log:\n${log}`);
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`timed out waiting for ${what}`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
