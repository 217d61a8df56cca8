"""Config loading the ml-collections way: `path.py:arg` plus `--config.a.b=value` overrides."""

import ast
import importlib.util
import os

import ml_collections


class UserError(ValueError):
    """Bad input from the user (a file, a flag, a config field): `handx` prints the message
    as one line and exits 2, without a traceback (unless --debug or HANDX_DEBUG=1)."""


class OverrideError(UserError, KeyError):
    """A `--config.a.b=v` override naming a field the config does not have."""

    __str__ = ValueError.__str__


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Load `configs/x.py:arg` (or `configs/x.py`) by calling its `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    module = load_module(path, spec)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"{path} has no get_config(arg)")
    return module.get_config(arg or None)


def load_module(path: str, spec: str | None = None):
    """Import a config file (a path, or one relative to the repository) as a module."""
    if not os.path.isfile(path):
        # Allow names relative to the repository's configs/ directory.
        here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)
        if os.path.isfile(here):
            path = here
        else:
            raise FileNotFoundError(f"config file not found: {spec or path!r}")
    module_name = "handx_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_arg(arg: str | None) -> dict:
    """Parse `size=S,data=0.2,runlocal` into {'size': 'S', 'data': 0.2, 'runlocal': True}."""
    out = {}
    if not arg:
        return out
    for item in arg.split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        out[key.strip()] = _literal(value.strip()) if eq else True
    return out


def parse_options(arg: str | None, allowed, source: str) -> dict:
    """`parse_arg`, refusing options outside `allowed` with a message naming `source`."""
    opts = parse_arg(arg)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; allowed: {', '.join(allowed)}")
    return opts


def pick_size(opts: dict, sizes, default: str, source: str) -> str:
    """The `size` option (or `default`), which must be a key of the family's size table."""
    size = str(opts.get("size", default))
    if size not in sizes:
        raise ValueError(f"{source}: unknown size {size!r}; choose one of {', '.join(sizes)}")
    return size


def data_config(opts: dict, source: str, *, small: bool, representation: str = "joint_pos_w_scalar_rot",
                ratio: float | None = None) -> ml_collections.ConfigDict:
    """The `data` section every motion config shares. The ratio is the `data` option (checked:
    0 < data <= 1) unless given; `small` picks the CPU-smoke synthetic dataset size."""
    from ml_collections import config_dict

    if ratio is None:
        ratio = float(opts.get("data", 1.0))
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"{source}: data={ratio} must satisfy 0 < data <= 1")
    c = ml_collections.ConfigDict()
    c.dir = config_dict.placeholder(str)  # None -> synthetic data in <workdir>/data
    c.ratio = float(ratio)
    c.seq_len = 60
    c.representation = representation
    c.num_synthetic_clips = 256 if small else 4096
    c.worker_count = 0
    return c


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
    """Apply `a.b=value` overrides; the value is cast to the field's existing type."""
    for item in overrides:
        key, eq, text = item.partition("=")
        if not eq:
            raise ValueError(f"override {item!r} must look like key.path=value")
        parts = key.split(".")
        node = config
        for part in parts[:-1]:
            if part not in node:
                raise OverrideError(f"override {item!r}: config has no field {part!r} on the path {key!r}")
            node = node[part]
        leaf = parts[-1]
        if leaf not in node:
            raise OverrideError(f"override {item!r}: config has no field {key!r}")
        old = node[leaf]
        value = _literal(text)
        if isinstance(old, bool):
            value = text.lower() in ("1", "true", "yes") if isinstance(value, str) else bool(value)
        elif isinstance(old, float) and isinstance(value, int):
            value = float(value)
        elif isinstance(old, float) and isinstance(value, str):
            try:  # nan, inf: numbers the config checks then refuse by name
                value = float(text)
            except ValueError:
                pass
        elif isinstance(old, str) and not isinstance(value, str):
            value = text
        elif isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        with node.ignore_type():
            node[leaf] = value
    return config


def split_config_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pull `--config.a.b=v` / `--config.a.b v` overrides out of argv."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise ValueError(f"{arg} needs a value")
                body = f"{body}={argv[i + 1]}"
                i += 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides
