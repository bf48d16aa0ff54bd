/**
 * Administering runs and functions from code: `tether.runs.get/list/cancel/
 * replay/wait` and `tether.functions.list/pause/resume`. They call the
 * control plane's RunService with the app's connection and key.
 */

import type { Connection } from "./connection.js";
import { RUN_STATUSES_TO_WIRE, runDetailFromWire, runFromWire } from "./convert.js";
import { DeadlineExceededError, TetherError } from "./errors.js";
import type { CatchUp, TriggerOption } from "./function.js";
import { FINISHED_STATUSES, type Run, type RunPage, type RunStatus } from "./models.js";
import { CronCatchUp } from "./gen/tether/v1/common.js";
import {
  type FunctionInfo as WireFunctionInfo,
  PauseMode,
  ReplayMode,
  RunServiceClient,
  type WaitRunResponse,
} from "./gen/tether/v1/run_service.js";

/** A source of the app's id and connection (the `Tether` client). */
export interface AdminApp {
  readonly appId: string;
  readonly connection: () => Connection;
}

function ms(value: Date | undefined): number {
  return value === undefined ? 0 : value.getTime();
}

/** The RunService client of the app's current connection. */
class RunService {
  #client: RunServiceClient | undefined;
  #address = "";

  constructor(protected readonly app: AdminApp) {}

  protected get connection(): Connection {
    return this.app.connection();
  }

  protected get client(): RunServiceClient {
    const connection = this.connection;
    if (this.#client === undefined || this.#address !== connection.address) {
      this.#client?.close();
      this.#client = new RunServiceClient(connection.address, connection.credentials(), connection.channelOptions());
      this.#address = connection.address;
    }
    return this.#client;
  }

  /** Closes the connection (a later call opens a new one). */
  close(): void {
    this.#client?.close();
    this.#client = undefined;
  }
}

/** Options of `runs.list`. */
export interface ListRunsOptions {
  functionId?: string;
  status?: RunStatus | readonly RunStatus[];
  createdAfter?: Date;
  createdBefore?: Date;
  /** Page size, default 50, at most 1,000. */
  limit?: number;
  pageToken?: string;
  /** Every app's runs, not only this app's. */
  allApps?: boolean;
}

/** Options of `runs.wait`. */
export interface WaitRunOptions {
  /** Return once the run reaches one of these statuses (or finished without reaching them). */
  until?: RunStatus | readonly RunStatus[];
  /** Give up after this many milliseconds (DeadlineExceededError). */
  timeoutMs?: number;
}

/** `tether.runs`: get, list, cancel, replay and wait for runs. */
export class RunsClient extends RunService {
  /** A run with its steps, history and events. Throws NotFoundError. */
  async get(runId: string): Promise<Run> {
    const client = this.client;
    const response = await this.connection.unary(client.getRun.bind(client), { runId });
    return runDetailFromWire(response);
  }

  /** Runs of this app (of every app with `allApps`), newest first. */
  async list(options: ListRunsOptions = {}): Promise<RunPage> {
    const statuses = options.status === undefined ? [] : typeof options.status === "string" ? [options.status] : options.status;
    const client = this.client;
    const response = await this.connection.unary(client.listRuns.bind(client), {
      appId: options.allApps === true ? "" : this.app.appId,
      functionId: options.functionId ?? "",
      statuses: statuses.map((s) => {
        const wire = RUN_STATUSES_TO_WIRE.get(s);
        if (wire === undefined) throw new RangeError(`unknown run status '${s}'`);
        return wire;
      }),
      createdAfterMs: ms(options.createdAfter),
      createdBeforeMs: ms(options.createdBefore),
      pageSize: options.limit ?? 50,
      pageToken: options.pageToken ?? "",
    });
    return { runs: response.runs.map(runFromWire), nextPageToken: response.nextPageToken };
  }

  /** Cancels a run: it starts no further step. */
  async cancel(runId: string, reason = ""): Promise<Run> {
    const client = this.client;
    const response = await this.connection.unary(client.cancelRun.bind(client), {
      runId,
      reason: reason === "" ? "cancelled from the SDK" : reason,
    });
    return runFromWire(response.run);
  }

  /** Cancels every unfinished run of one of this app's functions created in a time range. */
  async cancelMany(options: {
    functionId: string;
    createdAfter?: Date;
    createdBefore?: Date;
    reason?: string;
  }): Promise<number> {
    const client = this.client;
    const response = await this.connection.unary(client.cancelRuns.bind(client), {
      appId: this.app.appId,
      functionId: options.functionId,
      createdAfterMs: ms(options.createdAfter),
      createdBeforeMs: ms(options.createdBefore),
      reason: options.reason ?? "cancelled in bulk from the SDK",
    });
    return response.cancelled;
  }

  /** Starts a new run with the same event(s); `fromFailedStep` keeps the steps completed before the failed one. */
  async replay(runId: string, options: { fromFailedStep?: boolean } = {}): Promise<Run> {
    const client = this.client;
    const response = await this.connection.unary(client.replayRun.bind(client), {
      runId,
      mode: options.fromFailedStep === true ? ReplayMode.REPLAY_MODE_FROM_FAILED_STEP : ReplayMode.REPLAY_MODE_FROM_START,
    });
    return runFromWire(response.run);
  }

  /**
   * Waits until the run finishes and returns it (with steps and history).
   * With `until`, returns as soon as the run has reached one of those statuses
   * instead. Throws DeadlineExceededError after `timeoutMs`.
   */
  async wait(runId: string, options: WaitRunOptions = {}): Promise<Run> {
    const wanted = new Set<RunStatus>(
      options.until === undefined ? [] : typeof options.until === "string" ? [options.until] : options.until,
    );
    const call = this.client.waitRun({ runId }, this.connection.metadata());
    let last: Run | undefined;
    let timer: NodeJS.Timeout | undefined;
    const reached = new Promise<Run | undefined>((resolve, reject) => {
      call.on("data", (update: WaitRunResponse) => {
        last = runFromWire(update.run);
        if (wanted.has(last.status) || FINISHED_STATUSES.includes(last.status)) {
          resolve(last);
          call.cancel();
        }
      });
      call.on("error", (error: unknown) => {
        if (last !== undefined && (wanted.has(last.status) || FINISHED_STATUSES.includes(last.status))) resolve(last);
        else reject(this.connection.translate(error));
      });
      call.on("end", () => {
        resolve(last);
      });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          call.cancel();
          const state = last === undefined ? "" : ` (still ${last.status})`;
          const goal = wanted.size > 0 ? `become ${[...wanted].sort().join(" or ")}` : "finish";
          reject(new DeadlineExceededError(`run ${runId} did not ${goal} within ${options.timeoutMs} ms${state}`));
        }, options.timeoutMs);
      }
    });
    try {
      const result = await reached;
      if (result === undefined || !(FINISHED_STATUSES.includes(result.status) || wanted.has(result.status))) {
        throw new TetherError(`the control plane stopped reporting on run ${runId}`);
      }
    } finally {
      clearTimeout(timer);
    }
    return this.get(runId);
  }
}

/** A function as the control plane knows it. */
export interface FunctionInfo {
  appId: string;
  id: string;
  name: string;
  triggers: TriggerOption[];
  /** Workers connected now that serve it. */
  connectedWorkers: number;
  registeredAt: Date | null;
  updatedAt: Date | null;
  /** How it is paused; null when it is not. */
  paused: "hold" | "skip" | null;
  /** The next tick of each cron trigger, in trigger order (null: none). */
  nextFires: (Date | null)[];
}

const CATCH_UP_NAMES: ReadonlyMap<CronCatchUp, CatchUp> = new Map([
  [CronCatchUp.CRON_CATCH_UP_ONE, "one"],
  [CronCatchUp.CRON_CATCH_UP_NONE, "none"],
  [CronCatchUp.CRON_CATCH_UP_ALL, "all"],
]);

function functionInfo(info: WireFunctionInfo | undefined): FunctionInfo {
  if (info === undefined) throw new TetherError("the control plane sent no function");
  const definition = info.definition;
  const triggers = (definition?.triggers ?? []).flatMap((trigger): TriggerOption[] => {
    const kind = trigger.kind;
    if (kind?.$case === "event") {
      return [{ event: kind.value.name, ...(kind.value.ifExpression === "" ? {} : { if: kind.value.ifExpression }) }];
    }
    if (kind?.$case === "cron") {
      return [
        {
          cron: kind.value.schedule,
          ...(kind.value.timezone === "" ? {} : { tz: kind.value.timezone }),
          catchUp: CATCH_UP_NAMES.get(kind.value.catchUp) ?? "one",
        },
      ];
    }
    return [];
  });
  const date = (value: number): Date | null => (value === 0 ? null : new Date(value));
  return {
    appId: info.appId,
    id: definition?.id ?? "",
    name: definition?.name || definition?.id || "",
    triggers,
    connectedWorkers: info.connectedWorkers,
    registeredAt: date(info.registeredAtMs),
    updatedAt: date(info.updatedAtMs),
    paused: info.paused === PauseMode.PAUSE_MODE_HOLD ? "hold" : info.paused === PauseMode.PAUSE_MODE_SKIP ? "skip" : null,
    nextFires: info.nextFireMs.map(date),
  };
}

/** `tether.functions`: list, pause and resume the app's functions. */
export class FunctionsClient extends RunService {
  /** This app's functions (every app's with `allApps`), by id. */
  async list(options: { allApps?: boolean } = {}): Promise<FunctionInfo[]> {
    const client = this.client;
    const response = await this.connection.unary(client.listFunctions.bind(client), {
      appId: options.allApps === true ? "" : this.app.appId,
    });
    return response.functions.map(functionInfo);
  }

  /**
   * Pauses one of this app's functions: its runs start no execution until it
   * is resumed. New events queue held runs (`"hold"`) or start nothing
   * (`"skip"`). Throws NotFoundError for an unknown function.
   */
  async pause(functionId: string, mode: "hold" | "skip" = "hold"): Promise<FunctionInfo> {
    const given: unknown = mode;
    if (given !== "hold" && given !== "skip") {
      throw new RangeError(`a pause mode is 'hold' or 'skip', not '${String(given)}'`);
    }
    const client = this.client;
    const response = await this.connection.unary(client.pauseFunction.bind(client), {
      appId: this.app.appId,
      functionId,
      mode: mode === "hold" ? PauseMode.PAUSE_MODE_HOLD : PauseMode.PAUSE_MODE_SKIP,
    });
    return functionInfo(response.function);
  }

  /** Resumes a paused function; returns how many held runs it released. */
  async resume(functionId: string): Promise<number> {
    const client = this.client;
    const response = await this.connection.unary(client.resumeFunction.bind(client), {
      appId: this.app.appId,
      functionId,
    });
    return response.releasedRuns;
  }
}
