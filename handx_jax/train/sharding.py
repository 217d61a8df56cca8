"""Device mesh and logical-axis rules: how named parameter/activation axes map onto devices.

The mesh has axes ('data', 'fsdp', 'tensor'); a config gives their sizes with at most one
-1 (filled from the device count). Models name their axes logically (CONTRACTS.md) and the
rules below translate those names into mesh axes, so one model runs on 1 CPU or a pod.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axis (or axes, or None = replicated). Fixed by CONTRACTS.md.
LOGICAL_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("length", None),
    ("feature", None),
    ("joints", None),
)


class MeshError(ValueError):
    """A mesh that does not fit the devices or the batch; the message says what to change."""


def mesh_shape(mesh_config: Any, num_devices: int) -> tuple[int, int, int]:
    """Resolve the config's (data, fsdp, tensor) sizes, filling one -1 from the device count."""
    sizes = [int(_get(mesh_config, name, 1)) for name in MESH_AXES]
    free = [i for i, s in enumerate(sizes) if s == -1]
    if any(s == 0 or s < -1 for s in sizes):
        raise MeshError(f"mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    if len(free) > 1:
        names = " and ".join(f"mesh.{MESH_AXES[i]}" for i in free)
        raise MeshError(f"only one mesh axis may be -1, but {names} are: set all but one to a number")
    fixed = math.prod(s for s in sizes if s != -1)
    if free:
        if num_devices % fixed:
            raise MeshError(
                f"{num_devices} devices cannot be split into mesh {_describe(sizes)}: the fixed axes "
                f"multiply to {fixed}, which does not divide {num_devices}; choose sizes whose "
                f"product divides {num_devices}")
        sizes[free[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise MeshError(
            f"mesh {_describe(sizes)} needs {fixed} devices but {num_devices} are available: set one "
            f"axis to -1 (e.g. --config.mesh.data=-1) or make the product {num_devices}")
    return tuple(sizes)


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """Build the ('data', 'fsdp', 'tensor') mesh with automatic (GSPMD) axis types."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(mesh_config, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3,
                         devices=devices)


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh, process_count: int | None = None) -> None:
    """The global batch splits over data*fsdp devices and over host processes evenly."""
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch_size <= 0:
        raise MeshError(f"train.batch_size must be positive, got {batch_size}")
    if batch_size % shards:
        lower = max(shards, batch_size // shards * shards)
        raise MeshError(
            f"batch_size {batch_size} is not divisible by data*fsdp = {shards}: use a multiple of "
            f"{shards} (e.g. {lower}) or change mesh.data / mesh.fsdp")
    processes = jax.process_count() if process_count is None else process_count
    if batch_size % processes:
        raise MeshError(
            f"batch_size {batch_size} is not divisible by the {processes} host processes: use a "
            f"multiple of {processes}")


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) dimension split over ('data', 'fsdp'), the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp")))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def logical_to_mesh_spec(logical_spec: P | None, shape: Sequence[int] | None = None,
                         mesh: jax.sharding.Mesh | None = None) -> P:
    """Translate a logical PartitionSpec to mesh axes; a dimension that the mesh axes do not
    divide evenly is replicated instead (jit arguments must shard evenly)."""
    if logical_spec is None:
        return P()
    spec = nn.logical_to_mesh_axes(tuple(logical_spec), LOGICAL_RULES)
    if shape is None or mesh is None:
        return spec
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if axes is None:
            fitted.append(None)
            continue
        names = axes if isinstance(axes, tuple) else (axes,)
        size = math.prod(mesh.shape[n] for n in names)
        fitted.append(axes if dim % size == 0 else None)
    while fitted and fitted[-1] is None:
        fitted.pop()
    return P(*fitted)


def tree_shardings(abstract_boxed: Any, mesh: jax.sharding.Mesh) -> Any:
    """NamedShardings for an (abstract) pytree whose leaves may be nn.Partitioned boxes.

    Returns the tree of the *unboxed* structure: boxed leaves get their logical names mapped
    through LOGICAL_RULES, plain leaves are replicated.
    """
    specs = nn.get_partition_spec(abstract_boxed)
    shapes = nn.unbox(abstract_boxed)

    def one(spec, leaf):
        return NamedSharding(mesh, logical_to_mesh_spec(spec, np.shape(leaf), mesh))

    return jax.tree_util.tree_map(one, specs, shapes, is_leaf=lambda x: isinstance(x, P) or x is None)


def describe_mesh(mesh: jax.sharding.Mesh) -> str:
    return " x ".join(f"{k}={v}" for k, v in mesh.shape.items())


def _describe(sizes: Sequence[int]) -> str:
    return "(" + ", ".join(f"{n}={s}" for n, s in zip(MESH_AXES, sizes)) + ")"


def _get(cfg: Any, name: str, default: Any) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default) if not hasattr(cfg, "get") else cfg.get(name, default)
