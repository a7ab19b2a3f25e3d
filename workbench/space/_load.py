"""Load a :class:`Space` from a Python file (``spaces/*.py``) with one-line errors."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from workbench.errors import SpaceError, WorkbenchError


def load_space(path: str | Path, attribute: str = "space"):
    """Execute the space file and return its module-level ``space``.

    Errors in the file are reported with the file name and line, without a traceback.
    """
    from workbench.space._space import Space

    p = Path(path)
    if not p.exists():
        raise SpaceError(f"space file {str(path)!r} does not exist; pass a path like spaces/quickstart.py")
    if p.suffix != ".py":
        raise SpaceError(
            f"space file {str(path)!r} is not a .py file; spaces are Python files defining `space`"
        )
    module_name = f"workbench_space_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except WorkbenchError as exc:
        raise SpaceError(f"{p}: {exc}") from None
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == p.resolve()]
        where = f":{frames[-1].lineno}" if frames else ""
        raise SpaceError(f"{p}{where}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.modules.pop(module_name, None)
    spaces = [name for name, value in vars(module).items() if isinstance(value, Space)]
    if len(spaces) > 1:
        listed = ", ".join(f"`{name}`" for name in spaces)
        raise SpaceError(
            f"{p}: defines {len(spaces)} Space objects at module level ({listed}); a space file defines "
            f"one, `{attribute} = Space(...)`: build the others inside a function or in their own files"
        )
    space = getattr(module, attribute, None)
    if not isinstance(space, Space):
        raise SpaceError(f"{p}: defines no `{attribute} = Space(...)` at module level")
    return space
