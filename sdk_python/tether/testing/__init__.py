"""Testing Tether functions.

- :class:`TestEnvironment` starts a real control plane on a virtual clock (it
  jumps to the next timer whenever nothing is running) and a worker for your
  functions, so a flow that sleeps for days is tested in milliseconds.
- :func:`run_function` runs one function in-process with mocked step results,
  no control plane at all.
"""

from tether.testing._environment import TestEnvironment
from tether.testing._harness import HarnessResult, StepCall, run_function

__all__ = ["HarnessResult", "StepCall", "TestEnvironment", "run_function"]
