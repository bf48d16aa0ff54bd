/** Connections to the control plane: address, TLS, API key, channel options, errors. */

import {
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientUnaryCall,
  Metadata,
  type ServiceError,
  status,
  credentials,
} from "@grpc/grpc-js";

import {
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  LimitExceededError,
  NotFoundError,
  TetherError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.js";

export const DEFAULT_ADDRESS = "localhost:4770";
const MAX_MESSAGE_BYTES = 128 * 1024 * 1024;

/** Where the control plane is and how to reach it. */
export interface ConnectionOptions {
  /** `host:port`; default `TETHER_ADDRESS`, then `localhost:4770`. */
  address?: string;
  /** Sent as `authorization: Bearer <key>`; default `TETHER_API_KEY`. */
  apiKey?: string;
  /** TLS with the system's root certificates; default `TETHER_TLS=1`. */
  tls?: boolean;
}

/** The resolved connection settings of one client. */
export class Connection {
  readonly address: string;
  readonly apiKey: string | undefined;
  readonly tls: boolean;

  constructor(options: ConnectionOptions = {}) {
    const env = process.env;
    this.address = options.address ?? (env.TETHER_ADDRESS || DEFAULT_ADDRESS);
    this.apiKey = options.apiKey ?? (env.TETHER_API_KEY || undefined);
    this.tls = options.tls ?? ["1", "true"].includes(env.TETHER_TLS ?? "");
  }

  /** The same settings, elsewhere. */
  at(address: string): Connection {
    return new Connection({ address, ...(this.apiKey === undefined ? {} : { apiKey: this.apiKey }), tls: this.tls });
  }

  credentials(): ChannelCredentials {
    return this.tls ? credentials.createSsl() : credentials.createInsecure();
  }

  /** Channel options; `fresh` gives the channel its own connection (a worker's stream). */
  channelOptions(fresh = false): ChannelOptions {
    return {
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
      "grpc.keepalive_time_ms": 20_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.keepalive_permit_without_calls": 1,
      ...(fresh ? { "grpc.use_local_subchannel_pool": 1 } : {}),
    };
  }

  metadata(): Metadata {
    const metadata = new Metadata();
    if (this.apiKey !== undefined) metadata.set("authorization", `Bearer ${this.apiKey}`);
    return metadata;
  }

  /** A gRPC failure as the SDK's error, with the control plane's message. */
  translate(error: unknown): Error {
    if (!isServiceError(error)) return error instanceof Error ? error : new TetherError(String(error));
    const details = error.details || status[error.code] || "the call failed";
    switch (error.code) {
      case status.INVALID_ARGUMENT:
        return new InvalidArgumentError(details);
      case status.RESOURCE_EXHAUSTED:
        return new LimitExceededError(details);
      case status.NOT_FOUND:
        return new NotFoundError(details);
      case status.FAILED_PRECONDITION:
        return new FailedPreconditionError(details);
      case status.UNAUTHENTICATED:
        return new UnauthenticatedError(details);
      case status.DEADLINE_EXCEEDED:
        return new DeadlineExceededError(details);
      case status.UNAVAILABLE:
        return new UnavailableError(`the control plane at ${this.address} is unavailable: ${details}`);
      default:
        return new TetherError(details);
    }
  }

  /** Calls a unary method of a generated client and returns its response. */
  async unary<TRequest, TResponse>(
    method: (
      request: TRequest,
      metadata: Metadata,
      options: Partial<CallOptions>,
      callback: (error: ServiceError | null, response: TResponse) => void,
    ) => ClientUnaryCall,
    request: TRequest,
    metadata: Metadata = this.metadata(),
  ): Promise<TResponse> {
    return new Promise<TResponse>((resolve, reject) => {
      method(request, metadata, {}, (error, response) => {
        if (error !== null) reject(this.translate(error));
        else resolve(response);
      });
    });
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === "number" &&
    (error as Partial<ServiceError>).metadata !== undefined
  );
}
