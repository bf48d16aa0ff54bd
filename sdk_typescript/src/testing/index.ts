/**
 * Testing Tether functions.
 *
 * - `TestEnvironment` starts a real control plane on a virtual clock (it jumps
 *   to the next timer whenever nothing is running) and a worker for your
 *   functions, so a flow that sleeps for days is tested in milliseconds.
 * - `runFunction` runs one function in-process with mocked step results, no
 *   control plane at all.
 */

export { TestEnvironment, type TestEnvironmentOptions } from "./environment.js";
export { runFunction, type HarnessResult, type RunFunctionOptions, type StepCall } from "./harness.js";
