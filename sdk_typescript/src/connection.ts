/** Connections to the control plane: address, TLS, API key, channel options, errors. */

import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";

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
  ConfigError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  LimitExceededError,
  NotFoundError,
  PermissionDeniedError,
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
  /** Sent as `authorization: Bearer <key>`; default `TETHER_API_KEY`, else the file `TETHER_API_KEY_FILE` names. */
  apiKey?: string;
  /**
   * TLS, trusting the system's root certificates (or `tlsCa`); default
   * `TETHER_TLS=1`, or on when any of the three files below is set. `false`
   * ignores the files of the environment.
   */
  tls?: boolean;
  /** PEM file of the CA certificates that signed the control plane's certificate; default `TETHER_TLS_CA`. */
  tlsCa?: string;
  /** PEM client certificate, for a control plane that requires mutual TLS; default `TETHER_TLS_CLIENT_CERT`. */
  tlsClientCert?: string;
  /** Unencrypted PEM key of `tlsClientCert`; default `TETHER_TLS_CLIENT_KEY`. */
  tlsClientKey?: string;
}

/** The contents of the TLS files a connection trusts and presents. */
interface TlsFiles {
  readonly rootCerts?: Buffer;
  readonly clientCert?: Buffer;
  readonly clientKey?: Buffer;
}

/** The resolved connection settings of one client. */
export class Connection {
  readonly address: string;
  readonly apiKey: string | undefined;
  readonly tls: boolean;
  readonly #tlsFiles: TlsFiles;

  constructor(options: ConnectionOptions = {}, tlsFiles?: TlsFiles) {
    const env = process.env;
    this.address = options.address ?? (env.TETHER_ADDRESS || DEFAULT_ADDRESS);
    this.apiKey =
      options.apiKey ??
      (env.TETHER_API_KEY || (env.TETHER_API_KEY_FILE ? readApiKeyFile(env.TETHER_API_KEY_FILE) : undefined));
    if (tlsFiles !== undefined) {
      this.#tlsFiles = tlsFiles;
    } else if (options.tls === false) {
      if (options.tlsCa !== undefined || options.tlsClientCert !== undefined || options.tlsClientKey !== undefined) {
        throw new ConfigError("tls: false, but tlsCa, tlsClientCert or tlsClientKey is given: they are for TLS connections");
      }
      this.#tlsFiles = {};
    } else {
      this.#tlsFiles = loadTlsFiles(
        options.tlsCa ?? (env.TETHER_TLS_CA || undefined),
        options.tlsClientCert ?? (env.TETHER_TLS_CLIENT_CERT || undefined),
        options.tlsClientKey ?? (env.TETHER_TLS_CLIENT_KEY || undefined),
      );
    }
    const filesGiven = Object.keys(this.#tlsFiles).length > 0;
    this.tls = options.tls ?? (filesGiven || ["1", "true"].includes(env.TETHER_TLS ?? ""));
  }

  /** The same settings, elsewhere. */
  at(address: string): Connection {
    return new Connection(
      { address, ...(this.apiKey === undefined ? {} : { apiKey: this.apiKey }), tls: this.tls },
      this.#tlsFiles,
    );
  }

  credentials(): ChannelCredentials {
    if (!this.tls) return credentials.createInsecure();
    const { rootCerts, clientCert, clientKey } = this.#tlsFiles;
    return credentials.createSsl(rootCerts ?? null, clientKey ?? null, clientCert ?? null);
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
      case status.PERMISSION_DENIED:
        return new PermissionDeniedError(details);
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

/** Reads and checks the TLS files; a ConfigError names the one that cannot be used. */
/** The key in a key file (a mounted secret): its one line that is not blank or a `#` comment. */
function readApiKeyFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(`cannot read the API key file ${path}: ${reason}`);
  }
  const keys = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  if (keys.length !== 1) {
    throw new ConfigError(`the API key file ${path} must hold one key; it holds ${keys.length}`);
  }
  return keys[0] as string;
}

function loadTlsFiles(ca: string | undefined, clientCert: string | undefined, clientKey: string | undefined): TlsFiles {
  if ((clientCert === undefined) !== (clientKey === undefined)) {
    const [given, missing] = clientKey === undefined ? ["Cert", "Key"] : ["Key", "Cert"];
    throw new ConfigError(
      `a TLS client ${given.toLowerCase()} needs its ${missing.toLowerCase()} too: set tlsClient${missing} ` +
        `(TETHER_TLS_CLIENT_${missing.toUpperCase()})`,
    );
  }
  const files: { rootCerts?: Buffer; clientCert?: Buffer; clientKey?: Buffer } = {};
  if (ca !== undefined) {
    files.rootCerts = readPem(ca, "CERTIFICATE-----", "a PEM file of CA certificates (tlsCa, TETHER_TLS_CA)");
  }
  if (clientCert !== undefined && clientKey !== undefined) {
    files.clientCert = readPem(clientCert, "CERTIFICATE-----", "a PEM certificate (tlsClientCert, TETHER_TLS_CLIENT_CERT)");
    files.clientKey = readPem(clientKey, "PRIVATE KEY-----", "a PEM private key (tlsClientKey, TETHER_TLS_CLIENT_KEY)");
    if (files.clientKey.toString("latin1").includes("ENCRYPTED")) {
      throw new ConfigError(
        `the TLS client key ${clientKey} is encrypted, and Tether cannot ask for its passphrase: ` +
          "give it unencrypted (openssl pkey -in KEY -out PLAIN_KEY)",
      );
    }
    try {
      createSecureContext({ cert: files.clientCert, key: files.clientKey });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new ConfigError(`cannot use the TLS client certificate ${clientCert} with the key ${clientKey}: ${reason}`);
    }
  }
  return files;
}

function readPem(path: string, marker: string, expected: string): Buffer {
  let contents: Buffer;
  try {
    contents = readFileSync(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(`cannot read ${path}: ${reason}`);
  }
  const text = contents.toString("latin1");
  if (!text.includes("-----BEGIN") || !text.includes(marker)) {
    throw new ConfigError(`${path} is not ${expected}: no '-----BEGIN ...${marker}' block in it`);
  }
  return contents;
}

export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === "number" &&
    (error as Partial<ServiceError>).metadata !== undefined
  );
}
