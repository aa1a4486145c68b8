"""Project layout rules: pure maths never imports Flower; the `datasets` name stays ours."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Modules that hold maths or data handling: importable and testable without Flower.
PURE = ["datasets", "encoders", "strategies/backbones", "strategies/aggregation.py",
        "strategies/config.py", "strategies/distillation.py", "strategies/history.py",
        "strategies/protocol.py", "strategies/grouping.py", "strategies/fusion.py",
        "client_app/ranking.py", "client_app/training.py"]


def _imports(module: Path) -> list[str]:
    tree = ast.parse(module.read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]
    return names + [node.module or "" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom)]


def _modules(entry: str) -> list[Path]:
    path = ROOT / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []


@pytest.mark.parametrize("module", [m for e in PURE for m in _modules(e)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_do_not_import_flower(module):
    assert not [name for name in _imports(module) if name.split(".")[0] == "flwr"]


def test_datasets_package_is_ours_and_import_free():
    import datasets

    assert Path(datasets.__file__).resolve().parent == ROOT / "datasets"
    tree = ast.parse((ROOT / "datasets" / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_no_hugging_face_datasets_distribution_installed():
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("datasets")


def test_datasets_modules_never_import_encoders_or_transformers():
    banned = {"encoders", "transformers", "sentence_transformers", "open_clip"}
    for module in _modules("datasets"):
        assert not {name.split(".")[0] for name in _imports(module)} & banned, module.name
