"""The control plane's layers import only downwards: the domain (`model`) stands
alone, the store and the engine stand on it, and neither the engine nor the
store knows of gRPC, HTTP or telemetry; the engine never touches tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTROLPLANE = Path(__file__).resolve().parents[2] / "controlplane"

# Package -> prefixes none of its modules may import.
FORBIDDEN = {
    "model": (
        "controlplane.engine",
        "controlplane.store",
        "controlplane.api",
        "controlplane.http",
        "controlplane.cli",
        "controlplane.telemetry",
        "sqlalchemy",
        "grpc",
    ),
    "store": (
        "controlplane.engine",
        "controlplane.api",
        "controlplane.http",
        "controlplane.cli",
        "controlplane.telemetry",
        "grpc",
    ),
    "engine": (
        "controlplane.api",
        "controlplane.http",
        "controlplane.cli",
        "controlplane.telemetry",
        "grpc",
        "fastapi",
        "opentelemetry",
        "tether",
        # Tables and rows are the store's business: the engine calls its
        # methods with records.
        "controlplane.store.schema",
        "controlplane.store.codec",
        "sqlalchemy",
    ),
}


def imported_modules(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            # `from a.b import c` may import the module a.b.c.
            modules.append(node.module)
            modules.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    files = sorted((CONTROLPLANE / package).rglob("*.py"))
    assert files, f"controlplane/{package} has no modules"
    breaches = [
        f"{path.relative_to(CONTROLPLANE.parent)} imports {module}"
        for path in files
        for module in imported_modules(path)
        if any(module == p or module.startswith(p + ".") for p in FORBIDDEN[package])
    ]
    assert breaches == []
