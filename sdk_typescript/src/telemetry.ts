/**
 * Traces. The worker's span around a step attempt's code is a child of the
 * control plane's span for that attempt, whose id both sides derive from the
 * run, the step and the attempt (docs/protocol.md, "Trace context"). Spans go
 * through `@opentelemetry/api`: to whatever tracer provider the app
 * registered, or, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and none is, to an
 * OTLP exporter this module sets up.
 */

import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanStatusCode,
  TraceFlags,
  context,
  trace,
} from "@opentelemetry/api";
import type { Metadata } from "@grpc/grpc-js";

import { errorMessage, errorName } from "./errors.js";
import { stepSpanId } from "./stepIds.js";
import { VERSION } from "./version.js";

const tracer = trace.getTracer("tether.sdk", VERSION);

/** The ids of a W3C `traceparent`, or null when it is malformed. */
export interface TraceIds {
  traceId: string;
  spanId: string;
}

export function parseTraceparent(value: string | undefined): TraceIds | null {
  const parts = (value ?? "").split("-");
  if (parts.length !== 4) return null;
  const [, traceId = "", spanId = ""] = parts;
  if (!/^[0-9a-f]{32}$/.test(traceId) || !/^[0-9a-f]{16}$/.test(spanId)) return null;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return { traceId, spanId };
}

/** What a step span is about. */
export interface StepSpanInfo {
  trace: TraceIds | null;
  runId: string;
  functionId: string;
  name: string;
  hashed: string;
  attempt: number;
}

/**
 * Runs `fn` (a step attempt's code) inside its span; the span records the
 * error when `fn` throws. Without a recording tracer this costs one no-op span.
 */
export async function inStepSpan<T>(info: StepSpanInfo, fn: () => T | Promise<T>): Promise<T> {
  const parent = parentContext(info);
  const span = tracer.startSpan(
    `step ${info.name}`,
    {
      attributes: {
        "tether.run_id": info.runId,
        "tether.function_id": info.functionId,
        "tether.step_id": info.name,
        "tether.attempt": info.attempt,
      },
    },
    parent,
  );
  if (!span.isRecording()) {
    span.end();
    return await fn();
  }
  try {
    return await context.with(trace.setSpan(parent, span), fn);
  } catch (error) {
    recordError(span, error);
    throw error;
  } finally {
    span.end();
  }
}

function parentContext(info: StepSpanInfo): Context {
  if (info.trace === null) return context.active();
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: info.trace.traceId,
    spanId: stepSpanId(info.runId, info.hashed, info.attempt),
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  });
}

function recordError(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : { name: errorName(error), message: errorMessage(error) });
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${errorName(error)}: ${errorMessage(error)}` });
}

/** Adds the active span to `metadata` as `traceparent`, so an event's span is its child. */
export function addTraceContext(metadata: Metadata): void {
  const span = trace.getSpan(context.active())?.spanContext();
  if (span === undefined || !trace.isSpanContextValid(span)) return;
  const flags = (span.traceFlags & TraceFlags.SAMPLED) !== 0 ? "01" : "00";
  metadata.set("traceparent", `00-${span.traceId}-${span.spanId}-${flags}`);
}

interface Shutdown {
  shutdown(): Promise<void>;
}

let configured: Shutdown | null = null;

/**
 * Exports the worker's spans over OTLP (gRPC) when `OTEL_EXPORTER_OTLP_ENDPOINT`
 * (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and the app registered no
 * tracer provider itself. The standard `OTEL_*` variables configure the exporter.
 */
export async function configureFromEnvironment(serviceName: string): Promise<void> {
  const endpoint =
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (endpoint === undefined || endpoint === "" || configured !== null) return;
  if (tracer.startSpan("probe").isRecording()) return; // the app configured tracing itself
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }] =
    await Promise.all([
      import("@opentelemetry/sdk-trace-node"),
      import("@opentelemetry/exporter-trace-otlp-grpc"),
      import("@opentelemetry/resources"),
    ]);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": process.env.OTEL_SERVICE_NAME ?? serviceName,
    }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register();
  configured = provider;
}

/** Flushes and stops what `configureFromEnvironment` set up. */
export async function shutdownTelemetry(): Promise<void> {
  const provider = configured;
  configured = null;
  await provider?.shutdown();
}
