// Connection settings: where the API key comes from, and how a refusal reads.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { Metadata, status } from "@grpc/grpc-js";

import { Connection } from "../src/connection.js";
import { PermissionDeniedError } from "../src/index.js";

const saved = { ...process.env };
after(() => {
  process.env = saved;
});

function keyFile(contents: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "tether-key-")), "key");
  writeFileSync(path, contents);
  return path;
}

describe("the API key", () => {
  it("is read from TETHER_API_KEY_FILE when none is given", () => {
    delete process.env.TETHER_API_KEY;
    process.env.TETHER_API_KEY_FILE = keyFile("# shop workers\ntk_fromfile\n");
    assert.equal(new Connection().apiKey, "tk_fromfile");
    assert.equal(new Connection({ apiKey: "tk_given" }).apiKey, "tk_given");
    process.env.TETHER_API_KEY = "tk_env";
    assert.equal(new Connection().apiKey, "tk_env");
  });

  it("a file holding two keys, or none, is a ConfigError naming it", () => {
    delete process.env.TETHER_API_KEY;
    const two = keyFile("tk_one\ntk_two\n");
    process.env.TETHER_API_KEY_FILE = two;
    assert.throws(() => new Connection(), {
      name: "ConfigError",
      message: `the API key file ${two} must hold one key; it holds 2`,
    });
    process.env.TETHER_API_KEY_FILE = join(tmpdir(), "no-such-tether-key");
    assert.throws(() => new Connection(), { name: "ConfigError", message: /^cannot read the API key file / });
  });
});

describe("a refusal", () => {
  it("PERMISSION_DENIED is a PermissionDeniedError with the control plane's sentence", () => {
    const refused = Object.assign(new Error("7 PERMISSION_DENIED"), {
      code: status.PERMISSION_DENIED,
      details: "CancelRun needs the 'admin' role; this API key has the 'read' role",
      metadata: new Metadata(),
    });
    const error = new Connection({ apiKey: "tk_x" }).translate(refused);
    assert.ok(error instanceof PermissionDeniedError);
    assert.equal(error.message, "CancelRun needs the 'admin' role; this API key has the 'read' role");
  });
});
