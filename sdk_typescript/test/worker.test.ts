// The worker's side of the stream, against a scripted peer that plays the
// control plane over real gRPC on loopback: checkpointing (the function goes on
// after a step without waiting for anything from the control plane), outcomes
// batched into frames under the announced frame limit, seq numbering.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Server, ServerCredentials, type ServerDuplexStream } from "@grpc/grpc-js";

import { Tether } from "../src/index.js";
import type { Worker } from "../src/worker.js";
import {
  type Outcome,
  type ServerFrame,
  type WorkerFrame,
  WorkerServiceService,
} from "../src/gen/tether/v1/worker_service.js";
import { executeMessage } from "./support.js";

const MAX_FRAME_BYTES = 8192;

/** One stream as the scripted control plane saw it. */
interface Peer {
  /** Every outcome frame the worker wrote, in order. */
  frames: Outcome[][];
  /** Every frame's encoded size in bytes. */
  frameBytes: number[];
  send: (frame: ServerFrame) => void;
  /** Resolves once run `runId` has sent its RunCompleted. */
  untilCompleted: (runId: string) => Promise<void>;
}

/** A WorkerService that welcomes every worker, sends no acks and records outcomes. */
class ScriptedControlPlane {
  readonly server = new Server();
  #port = 0;
  #peers: ((peer: Peer) => void)[] = [];

  async start(): Promise<string> {
    this.server.addService(WorkerServiceService, {
      connect: (call: ServerDuplexStream<WorkerFrame, ServerFrame>) => {
        this.#accept(call);
      },
    });
    this.#port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
        if (error === null) resolve(port);
        else reject(error);
      });
    });
    return `127.0.0.1:${this.#port}`;
  }

  /** Resolves with the next worker to connect. */
  nextPeer(): Promise<Peer> {
    return new Promise((resolve) => this.#peers.push(resolve));
  }

  #accept(call: ServerDuplexStream<WorkerFrame, ServerFrame>): void {
    const completed = new Set<string>();
    const waiters = new Map<string, () => void>();
    const peer: Peer = {
      frames: [],
      frameBytes: [],
      send: (frame) => call.write(frame),
      untilCompleted: (runId) =>
        completed.has(runId) ? Promise.resolve() : new Promise((resolve) => waiters.set(runId, resolve)),
    };
    call.on("data", (frame: WorkerFrame) => {
      switch (frame.frame?.$case) {
        case "hello":
          call.write({
            frame: {
              $case: "welcome",
              value: {
                sessionId: "scripted",
                protocolVersion: 1,
                heartbeatIntervalMs: 60_000,
                leaseTimeoutMs: 180_000,
                limits: {
                  maxEventBytes: 1 << 20,
                  maxStepOutputBytes: 1 << 20,
                  maxRunStateBytes: 8 << 20,
                  maxStepsPerRun: 1000,
                  maxFrameBytes: MAX_FRAME_BYTES,
                },
                serverVersion: "scripted",
              },
            },
          });
          this.#peers.shift()?.(peer);
          break;
        case "outcomes": {
          const outcomes = frame.frame.value.outcomes;
          peer.frames.push(outcomes);
          peer.frameBytes.push(Buffer.byteLength(encoded(frame)));
          for (const outcome of outcomes) {
            if (outcome.kind?.$case !== "runCompleted") continue;
            completed.add(outcome.runId);
            waiters.get(outcome.runId)?.();
          }
          break;
        }
        default:
          break;
      }
    });
    call.on("end", () => call.end());
    call.on("error", () => undefined);
  }
}

function encoded(frame: WorkerFrame): Uint8Array {
  return WorkerServiceService.connect.requestSerialize(frame);
}

describe("the worker's stream", () => {
  const controlPlane = new ScriptedControlPlane();
  const tether = new Tether({ appId: "framing" });
  let worker: Worker;
  let peer: Peer;
  let running: Promise<void>;

  tether.createFunction({ id: "sequential", event: "framing/sequential" }, async ({ step }) => {
    const one = await step.run("one", () => 1);
    const two = await step.run("two", () => one + 1);
    const three = await step.run("three", () => two + 1);
    return three;
  });
  tether.createFunction({ id: "large", event: "framing/large" }, async ({ step }) => {
    const part = (name: string): Promise<string> => step.run(name, () => name.repeat(3000 / name.length));
    const parts = await Promise.all([part("a"), part("b"), part("c"), part("d")]);
    return parts.map((p) => p.length);
  });

  before(async () => {
    tether.setAddress(await controlPlane.start());
    worker = tether.worker({ capacity: 4 });
    const connected = controlPlane.nextPeer();
    running = worker.run();
    peer = await connected;
  });

  after(async () => {
    const last = peer.frames.flat().at(-1)?.seq ?? 0;
    peer.send({ frame: { $case: "acks", value: { throughSeq: last, refused: [] } } });
    worker.drain();
    await running;
    controlPlane.server.forceShutdown();
  });

  it("runs every step of an execution without a word from the control plane, and batches their outcomes", async () => {
    const frameCount = peer.frames.length;
    peer.send({
      frame: {
        $case: "dispatch",
        value: { executions: [executeMessage({ executionId: "exec-seq", runId: "run-seq", functionId: "sequential" })] },
      },
    });
    await peer.untilCompleted("run-seq");
    const frames = peer.frames.slice(frameCount);
    const outcomes = frames.flat();
    assert.deepEqual(
      outcomes.map((o) => o.kind?.$case),
      ["stepCompleted", "stepCompleted", "stepCompleted", "runCompleted"],
    );
    // The peer never acknowledged anything: the function went on after each
    // step by itself, and its four outcomes travelled together.
    assert.equal(frames.length, 1, `${outcomes.length} outcomes came in ${frames.length} frames`);
    const completed = outcomes.at(-1)?.kind;
    assert.equal(completed?.$case === "runCompleted" && Buffer.from(completed.value.output).toString(), "3");
  });

  it("numbers outcomes 1, 2, 3 and splits a batch into frames under the announced limit", async () => {
    const frameCount = peer.frames.length;
    peer.send({
      frame: {
        $case: "dispatch",
        value: { executions: [executeMessage({ executionId: "exec-large", runId: "run-large", functionId: "large" })] },
      },
    });
    await peer.untilCompleted("run-large");
    const frames = peer.frames.slice(frameCount);
    assert.ok(frames.length >= 2, "four outputs of 3,000 bytes do not fit one frame of 8,192 bytes");
    for (const bytes of peer.frameBytes.slice(frameCount)) {
      assert.ok(bytes <= MAX_FRAME_BYTES, `a frame of ${bytes} bytes is over the ${MAX_FRAME_BYTES}-byte limit`);
    }
    const seqs = peer.frames.flat().map((o) => o.seq);
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i + 1),
    );
  });
});
