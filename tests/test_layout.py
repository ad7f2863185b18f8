"""DESIGN's rule: payments, billing_adapter and notifications never import each other nor flask;
they meet through the outbox and portal's services. The sandbox gateways are local stand-ins for
the channels (servers of their own), not channel code, and may use flask."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("payments", "billing_adapter", "notifications")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_neither_flask_nor_its_siblings(package) -> None:
    forbidden = {"flask", *PACKAGES} - {package}
    offenders = {str(path.relative_to(ROOT)): sorted(_imports(path) & forbidden)
                 for path in (ROOT / package).rglob("*.py")
                 if "sandbox" not in path.parts and _imports(path) & forbidden}
    assert offenders == {}
