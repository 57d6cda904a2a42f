"""Optional dependencies (pyproject's extras): a missing one is named with the pip command that installs it,
as pandas' `import_optional_dependency` does, instead of torch's "Module onnx is not installed!" from deep
inside an export. Proven by tests/utils/test_extras.py and tests/test_wheel.py (an installed wheel without the
deploy extra).
"""
from __future__ import annotations

import importlib.util

__all__ = ["MissingExtraError", "require_extra"]


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message says which extra brings it."""


def require_extra(module: str, *, extra: str, purpose: str) -> None:
    """Raise MissingExtraError unless `module` can be imported; `purpose` says what needs it."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"{purpose} needs the package {module!r}, which is not installed: "
                                f"pip install 'resbone[{extra}]'", name=module)
