"""``python -m tether module:app``: serve an app's functions (what ``tether
worker`` runs)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tether._client import Tether
from tether._errors import ConfigError


def load_app(target: str) -> Tether:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"expected MODULE:APP, like 'myapp.worker:app', not {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SystemExit(f"cannot import {module_name!r}: {error}") from None
    except ConfigError as error:  # Tether(...) refused its settings (TLS files, ...)
        raise SystemExit(f"{target}: {error}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, Tether):
        raise SystemExit(f"{target!r} is not a Tether app (found {type(app).__name__})")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tether", description=__doc__)
    parser.add_argument("target", metavar="MODULE:APP")
    parser.add_argument("--capacity", type=int, default=100)
    args = parser.parse_args()
    load_app(args.target).serve(capacity=args.capacity)


if __name__ == "__main__":
    main()
