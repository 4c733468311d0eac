"""Build objects from ``{class, module_path, kwargs}`` specs (Qlib's init_instance_by_config).

``module_path`` is a dotted module or a ``.py`` file (relative to the config's folder);
``class`` may also be a full dotted path. Every failure names the config file and the field.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from qrecorder.workflow.errors import ConfigError


def _import_module(module_path: str, *, base_dir: str | Path | None, source: str | None, field: str) -> ModuleType:
    if module_path.endswith(".py") or "/" in module_path:
        path = Path(module_path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise ConfigError(f"module file {str(path)!r} not found", source=source, field=field)
        name = f"qrecorder_user_{abs(hash(str(path.resolve())))}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ConfigError(f"importing {str(path)!r} raised {type(exc).__name__}: {exc}",
                              source=source, field=field) from exc
        return module
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        hint = "" if exc.name == module_path else f" (inside it, {exc.name!r} is missing)"
        raise ConfigError(f"module {module_path!r} not found{hint}", source=source, field=field) from exc
    except Exception as exc:
        raise ConfigError(f"importing {module_path!r} raised {type(exc).__name__}: {exc}",
                          source=source, field=field) from exc


def get_class(spec: Mapping[str, Any], *, default_module: str | None = None, base_dir: str | Path | None = None,
              source: str | None = None, field: str = "config") -> type:
    """Resolve the class of a spec, suggesting near names when it is missing."""
    cls_name: str = spec["class"]
    module_path = spec.get("module_path")
    if module_path is None and "." in cls_name:
        module_path, cls_name = cls_name.rsplit(".", 1)
    if module_path is None:
        module_path = default_module
    if module_path is None:
        raise ConfigError("no module_path and no default module", source=source, field=f"{field}.module_path")
    module = _import_module(module_path, base_dir=base_dir, source=source, field=f"{field}.module_path")
    cls = getattr(module, cls_name, None)
    if cls is None:
        names = [n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n), type)]
        close = difflib.get_close_matches(cls_name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; it has {', '.join(sorted(names)) or 'no classes'}"
        raise ConfigError(f"class {cls_name!r} not found in module {module_path!r}{hint}",
                          source=source, field=f"{field}.class")
    if not callable(cls):
        raise ConfigError(f"{cls_name!r} in {module_path!r} is not a class", source=source, field=f"{field}.class")
    return cls


def accepts_kwarg(cls: Any, name: str) -> bool:
    """True if ``cls(...)`` takes keyword ``name`` (directly or through **kwargs)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def init_instance_by_config(
    config: Any,
    default_module: str | None = None,
    accept_types: type | tuple[type, ...] = (),
    try_kwargs: Mapping[str, Any] | None = None,
    *,
    base_dir: str | Path | None = None,
    source: str | None = None,
    field: str = "config",
    **kwargs: Any,
) -> Any:
    """Instantiate ``config`` (a spec dict), or return it unchanged if it is already an instance.

    ``try_kwargs`` are passed only if the class accepts them; ``kwargs`` always override.
    """
    if accept_types and isinstance(config, accept_types):
        return config
    if not isinstance(config, Mapping) or "class" not in config:
        return config
    cls = get_class(config, default_module=default_module, base_dir=base_dir, source=source, field=field)
    ckw = dict(config.get("kwargs") or {})
    for k, v in (try_kwargs or {}).items():
        if k not in ckw and accepts_kwarg(cls, k):
            ckw[k] = v
    ckw.update(kwargs)
    try:
        return cls(**ckw)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{cls.__name__}(...) raised {type(exc).__name__}: {exc}",
                          source=source, field=f"{field}.kwargs") from exc


def fill_placeholder(value: Any, mapping: Mapping[str, Any]) -> Any:
    """Replace "<MODEL>" / "<DATASET>" strings anywhere in a nested config (Qlib's qrun)."""
    if isinstance(value, str) and value in mapping:
        return mapping[value]
    if isinstance(value, Mapping):
        return {k: fill_placeholder(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholder(v, mapping) for v in value]
    return value
