"""Plan a training run before launch: compile its step ahead of time for a target mesh.

`plan(config, num_devices=N)` builds the trainer's abstract state (shapes and shardings,
no arrays), compiles the jitted train step for N devices (fake CPU devices, or the chips
of a TPU topology description), and reports per device: parameter, optimizer, EMA and
batch bytes, XLA's memory analysis (arguments, outputs, temporaries), analytic and XLA
FLOPs, the bytes moved by collectives, and a roofline step-time / MFU estimate for each
accelerator of `ACCELERATORS`. Meshes whose axes do not divide the batch or a sharded
parameter dimension (heads, widths) are refused with the nearest meshes that work; a
vocabulary they do not divide is replicated and listed. The code knows no model family:
it works from the config's Task and the Trainer (a task's `dummy_batch` gives the shapes).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Sequence

import flax
import flax.linen as nn
import jax
import numpy as np

from handx_jax.train import sharding as sharding_lib
from handx_jax.train.task import load_task

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """Dense peak FLOP/s per chip (bfloat16, and float32 at JAX's default matmul precision),
    HBM capacity and bandwidth, and the per-chip interconnect bandwidth (one direction)."""

    name: str
    bf16_flops: float
    f32_flops: float
    hbm_bytes: float
    hbm_bytes_per_s: float
    link_bytes_per_s: float


# Sources and caveats: docs/plan.md ("Accelerator table").
ACCELERATORS = {
    "H100": Accelerator("H100 SXM", 989e12, 494.5e12, 80e9, 3.35e12, 450e9),
    "H200": Accelerator("H200 SXM", 989e12, 494.5e12, 141e9, 4.8e12, 450e9),
    "A100": Accelerator("A100 SXM 80GB", 312e12, 156e12, 80e9, 2.039e12, 300e9),
    "v4": Accelerator("TPU v4", 275e12, 275e12, 32 * GiB, 1.2e12, 300e9),
    "v5e": Accelerator("TPU v5e", 197e12, 197e12, 16 * GiB, 819e9, 200e9),
    "v5p": Accelerator("TPU v5p", 459e12, 459e12, 95 * GiB, 2.765e12, 600e9),
}


class PlanError(ValueError):
    """A plan that cannot be made; the one-line message names the field to change."""


class DoesNotFit(PlanError):
    """The target's compiler (TPU) ran out of device memory compiling the step."""


# -- meshes ------------------------------------------------------------------------------

def sharded_dims(abstract_boxed_params: Any) -> list[tuple[str, tuple[int, ...], int, str, tuple[str, ...]]]:
    """(parameter path, shape, dimension, logical name, mesh axes) for every parameter
    dimension that the logical rules put on a mesh axis."""
    rules = dict(sharding_lib.LOGICAL_RULES)
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract_boxed_params), sep="/",
                                           is_leaf=lambda _, v: isinstance(v, nn.meta.AxisMetadata))
    out = []
    for path, leaf in flat.items():
        names = getattr(leaf, "names", None)
        if names is None:
            continue
        shape = tuple(nn.unbox(leaf).shape)
        for dim, name in enumerate(names):
            axes = rules.get(name)
            if axes is None:
                continue
            axes = axes if isinstance(axes, tuple) else (axes,)
            out.append((path, shape, dim, name, axes))
    return out


# Logical axes a mesh need not divide: the vocabulary is the codebook plus special tokens
# (514 for codebook 512), not a width one picks to suit a mesh. The trainer replicates such a
# dimension over its mesh axes; the plan lists it (`replicated`) instead of refusing the mesh.
REPLICABLE_AXES = ("vocab",)


def _undivided(sizes: Sequence[int], dims: Iterable):
    """(path, shape, dim, name, axes, divisor) of each parameter dimension the mesh does not divide."""
    axis = dict(zip(sharding_lib.MESH_AXES, sizes))
    for path, shape, dim, name, axes in dims:
        divisor = math.prod(axis[a] for a in axes)
        if shape[dim] % divisor:
            yield path, shape, dim, name, axes, divisor


def mesh_problems(sizes: Sequence[int], batch_size: int, dims: Iterable) -> list[str]:
    """Why a (data, fsdp, tensor) mesh does not fit: the batch, or a parameter dimension
    (other than REPLICABLE_AXES) that its mesh axes do not divide (the trainer would
    replicate it instead)."""
    axis = dict(zip(sharding_lib.MESH_AXES, sizes))
    problems = []
    if batch_size % (axis["data"] * axis["fsdp"]):
        problems.append(f"data*fsdp = {axis['data'] * axis['fsdp']} does not divide train.batch_size {batch_size}")
    seen = set()
    for path, shape, dim, name, axes, divisor in _undivided(sizes, dims):
        key = (name, shape[dim], axes)
        if name not in REPLICABLE_AXES and key not in seen:
            seen.add(key)
            problems.append(f"{'*'.join(axes)} = {divisor} does not divide the '{name}' axis ({shape[dim]}) "
                            f"of {path} {shape}")
    return problems


def replicated_dims(sizes: Sequence[int], dims: Iterable) -> list[str]:
    """The REPLICABLE_AXES dimensions this mesh does not divide (the trainer replicates them)."""
    return [f"{'*'.join(axes)} = {divisor} does not divide the '{name}' axis ({shape[dim]}) of {path} {shape}"
            for path, shape, dim, name, axes, divisor in _undivided(sizes, dims) if name in REPLICABLE_AXES]


def valid_meshes(num_devices: int, batch_size: int, dims: Sequence) -> list[tuple[int, int, int]]:
    """Every (data, fsdp, tensor) with product `num_devices` that fits the batch and params."""
    out = []
    for data in _divisors(num_devices):
        for fsdp in _divisors(num_devices // data):
            sizes = (data, fsdp, num_devices // data // fsdp)
            if not mesh_problems(sizes, batch_size, dims):
                out.append(sizes)
    return out


def nearest_meshes(wanted: Sequence[int], candidates: Sequence[tuple[int, int, int]], k: int = 3):
    """The `k` candidates closest to `wanted` (sum over axes of |log2 ratio|; -1 counts as 1)."""
    def distance(sizes):
        return (sum(abs(math.log2(s / max(w, 1))) for s, w in zip(sizes, wanted)), -sizes[0])

    return sorted(candidates, key=distance)[:k]


def format_mesh(sizes: Sequence[int]) -> str:
    return ",".join(f"{n}={s}" for n, s in zip(sharding_lib.MESH_AXES, sizes))


def parse_mesh(text: str) -> dict:
    """`data=8,fsdp=4,tensor=2` (any subset; -1 fills) -> {'data': 8, ...}."""
    out = {}
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or name not in sharding_lib.MESH_AXES:
            raise PlanError(f"--mesh {text!r}: items must look like data=N, fsdp=N or tensor=N (got {item!r})")
        try:
            out[name] = int(value)
        except ValueError:
            raise PlanError(f"--mesh {text!r}: {name} must be an integer, got {value!r}") from None
    return out


def check_mesh(config: Any, num_devices: int, dims: Sequence) -> tuple[int, int, int]:
    """Resolve `config.mesh` for `num_devices`; refuse (PlanError, one line) a mesh that does
    not fit, naming the problem and the nearest meshes that work."""
    batch = int(config.train.batch_size)
    wanted = [int(config.mesh.get(a, 1)) for a in sharding_lib.MESH_AXES]
    try:
        sizes = sharding_lib.mesh_shape(config.mesh, num_devices)
        problems = mesh_problems(sizes, batch, dims)
    except sharding_lib.MeshError as err:
        sizes, problems = tuple(wanted), [str(err)]
    if not problems:
        return tuple(sizes)
    ok = valid_meshes(num_devices, batch, dims)
    hint = ("nearest meshes that work: " + "; ".join(format_mesh(m) for m in nearest_meshes(wanted, ok))
            if ok else f"no mesh of {num_devices} devices fits train.batch_size {batch}: change the batch size")
    raise PlanError(f"mesh {format_mesh(sizes)} on {num_devices} devices: {'; '.join(problems)}; {hint}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# -- devices -----------------------------------------------------------------------------

# TPU generations `--topology GEN:SHAPE` knows: GEN -> (libtpu's topology prefix, chip
# configuration, key in ACCELERATORS). v4 and v5p chips run as one "megacore" device.
TPU_GENERATIONS = {"v4": ("v4", "megacore", "v4"), "v5p": ("v5", "megacore", "v5p"),
                   "v5e": ("v5e", "default", "v5e")}


def parse_topology(topology: str) -> tuple[str, dict, str]:
    """`v5e:4x4` -> (libtpu topology name, get_topology_desc keyword arguments, accelerator key)."""
    gen, _, shape = str(topology).partition(":")
    if gen not in TPU_GENERATIONS or not re.fullmatch(r"[1-9]\d*(x[1-9]\d*){1,2}", shape):
        raise PlanError(f"--topology {topology!r}: expected GEN:SHAPE with GEN one of {', '.join(TPU_GENERATIONS)} "
                        "and SHAPE chips per axis (v5e:4x4, v5p:2x2x4, v4:2x2x2)")
    prefix, chip, key = TPU_GENERATIONS[gen]
    # One slice; hosts of 2x2x1 chips, as Cloud TPU VMs of these generations have.
    return f"{prefix}:{shape}", {"chip_config_name": chip, "chips_per_host_bounds": (2, 2, 1), "num_slices": 1}, key


def target_devices(num_devices: int | None = None, topology: str | None = None) -> list:
    """Devices to compile for: the chips of a TPU topology description (needs libtpu), or
    the first `num_devices` local devices (fake CPU devices through XLA_FLAGS)."""
    if topology:
        name, kwargs, _ = parse_topology(topology)
        try:
            from jax.experimental import topologies

            devices = list(topologies.get_topology_desc(topology_name=name, platform="tpu", **kwargs).devices)
        except Exception as err:  # no libtpu, unknown name: say which
            raise PlanError(f"--topology {topology!r}: cannot describe it ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); it needs libtpu "
                            "(pip install -e '.[tpu-plan]')") from None
        if num_devices and num_devices != len(devices):
            raise PlanError(f"--devices {num_devices} but topology {topology} has {len(devices)} chips")
        return devices
    available = jax.devices()
    n = int(num_devices or len(available))
    if n <= 0:
        raise PlanError(f"--devices must be positive, got {n}")
    if n > len(available):
        raise PlanError(f"--devices {n}: this process has {len(available)} {available[0].platform} devices; "
                        f"start it with XLA_FLAGS=--xla_force_host_platform_device_count={n} "
                        "(handx plan does this itself)")
    return available[:n]


# -- the plan ----------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    """A planned run: `report` (JSON-ready dict) and the compiled step (callable with real
    arrays on the same devices: `compiled(state, batch, key)`)."""

    report: dict
    compiled: Any
    trainer: Any


def abstract_batch(task, batch_size: int) -> dict:
    """Global batch as ShapeDtypeStructs (the task's `dummy_batch`, else one real batch)."""
    if hasattr(task, "dummy_batch"):
        local = task.dummy_batch(batch_size)
    else:
        local = next(iter(task.train_inputs(batch_size=batch_size, seed=0, shard_index=0, shard_count=1)))
    return {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for k, v in local.items()}


def per_device_bytes(tree: Any) -> int:
    """Bytes one device holds of an (abstract) sharded pytree (shardings are even)."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if getattr(leaf, "sharding", None) is not None else leaf.shape
        total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
    return int(total)


_COLLECTIVE = re.compile(
    r"^\s*\S+\s*=\s*(.*?)\s(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)(?:-start)?\(",
    re.MULTILINE)
_SHAPE = re.compile(r"\b(pred|[sfu](?:8|16|32|64)|bf16|f8e\w+)\[([0-9,]*)\]")
_ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
             "f32": 4, "s64": 8, "u64": 8, "f64": 8}


def collective_bytes(hlo_text: str) -> dict:
    """Output bytes per device of each collective kind in compiled HLO text."""
    out: dict[str, int] = {}
    for match in _COLLECTIVE.finditer(hlo_text):
        size = 0
        for dtype, dims in _SHAPE.findall(match.group(1)):
            n = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
            size += n * _ITEMSIZE.get(dtype, 1)
        out[match.group(2)] = out.get(match.group(2), 0) + size
    return out


def estimates(report: dict, accelerators: dict = ACCELERATORS) -> dict:
    """Roofline step time per accelerator: max(FLOPs / peak, XLA bytes / HBM bandwidth)
    plus collectives over the interconnect (all-reduce counted twice: reduce-scatter +
    all-gather), not overlapped; MFU = analytic FLOPs / (peak x step time). FLOPs are the
    larger of XLA's and the analytic count: XLA counts a loop body once (the TPU compiler's
    windowed collective matmuls are loops)."""
    dev = report["per_device"]
    bf16 = report["compute_dtype"] == "bfloat16"
    comm = dev["collective_bytes"]
    comm_bytes = sum(comm.values()) + comm.get("all-reduce", 0)
    out = {}
    for key, acc in accelerators.items():
        peak = acc.bf16_flops if bf16 else acc.f32_flops
        t_compute = max(dev["xla_flops"], dev["analytic_flops"]) / peak
        t_memory = dev["xla_bytes_accessed"] / acc.hbm_bytes_per_s
        t_comm = comm_bytes / acc.link_bytes_per_s if report["num_devices"] > 1 else 0.0
        step = max(t_compute, t_memory) + t_comm
        out[key] = {"step_s": step, "mfu": dev["analytic_flops"] / peak / step if step else 0.0,
                    "bound": "compute" if t_compute >= t_memory else "memory",
                    "comm_s": t_comm, "fits": dev["total_bytes"] <= acc.hbm_bytes,
                    "hbm_gib": acc.hbm_bytes / GiB}
    return out


def plan(config: Any, num_devices: int | None = None, *, topology: str | None = None,
         accelerators: dict = ACCELERATORS) -> Plan:
    """Compile `config`'s train step ahead of time for the target devices and report its
    per-device memory, FLOPs and estimates (see the module docstring)."""
    from handx_jax.train import loop, state as state_lib

    config = loop.add_trainer_defaults(config)
    devices = target_devices(num_devices, topology)
    n = len(devices)
    task = load_task(config)
    batch_size = int(config.train.batch_size)
    batch = abstract_batch(task, batch_size)
    boxed = jax.eval_shape(task.init_params, jax.random.PRNGKey(0), batch)
    dims = sharded_dims(boxed)
    sizes = check_mesh(config, n, dims)
    config = config.copy_and_resolve_references()
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = sizes
    trainer = _abstract_trainer_class()(config, workdir="", devices=devices, example_batch=batch)
    try:
        compiled = trainer.compile()
    except Exception as err:  # the TPU compiler refuses a step that overflows HBM
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        raise DoesNotFit(f"mesh {format_mesh(sizes)} on {topology or f'{n} devices'} does not fit: "
                         f"{str(err).strip().splitlines()[0]}") from None
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    abstract = trainer.abstract_state
    dtypes = sorted({np.dtype(x.dtype).name for x in jax.tree_util.tree_leaves(abstract.params)})
    flops_per_example = float(task.flops_per_example())
    args, outs = int(memory.argument_size_in_bytes), int(memory.output_size_in_bytes)
    alias, temp = int(memory.alias_size_in_bytes), int(memory.temp_size_in_bytes)
    report = {
        "config": {"task": str(config.task), "size": str(config.get("size", "")),
                   "batch_size": batch_size},
        "num_devices": n, "platform": devices[0].platform, "topology": topology,
        "accelerator": parse_topology(topology)[2] if topology else None,
        "mesh": dict(zip(sharding_lib.MESH_AXES, sizes)),
        "compute_dtype": str(config.model.get("dtype", "float32")) if "model" in config else "float32",
        "param_dtypes": dtypes, "replicated": replicated_dims(sizes, dims),
        "params": state_lib.count_params(abstract.params),
        "flops_per_step": flops_per_example * batch_size,
        "per_device": {
            "params_bytes": per_device_bytes(abstract.params),
            "optimizer_bytes": per_device_bytes(abstract.opt_state),
            "ema_bytes": per_device_bytes(abstract.ema_params),
            "batch_bytes": per_device_bytes(trainer.batch_spec),
            "argument_bytes": args, "output_bytes": outs, "alias_bytes": alias, "temp_bytes": temp,
            "total_bytes": args + outs - alias + temp,
            "analytic_flops": flops_per_example * batch_size / n,
            "xla_flops": float(cost.get("flops", 0.0)),
            "xla_bytes_accessed": float(cost.get("bytes accessed", 0.0)),
            "collective_bytes": collective_bytes(compiled.as_text() or ""),
        },
    }
    report["estimates"] = estimates(report, accelerators)
    return Plan(report=report, compiled=compiled, trainer=trainer)


def _abstract_trainer_class():
    """The Trainer, fed a batch of ShapeDtypeStructs: its `to_global` attaches the batch
    sharding instead of placing arrays, so nothing is allocated on the target devices."""
    from handx_jax.train import loop

    class AbstractTrainer(loop.Trainer):
        def to_global(self, local_batch):
            return jax.tree_util.tree_map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.batch_sharding), local_batch)

    return AbstractTrainer


# -- presentation ------------------------------------------------------------------------

def _mib(x: float) -> str:
    return f"{x / 2 ** 20:.1f}"


def format_reports(reports: Sequence[dict], accelerators: Sequence[str] | None = None) -> str:
    """Two tables: memory and FLOPs per device per mesh, then estimates per accelerator."""
    if not reports:
        return ""
    r0 = reports[0]
    head = (f"{r0['config']['size'] or r0['config']['task']}: {r0['params'] / 1e6:.2f}M params "
            f"({'/'.join(r0['param_dtypes'])}), compute {r0['compute_dtype']}, batch {r0['config']['batch_size']}, "
            f"{r0['num_devices']} {r0['platform']} devices{' (' + r0['topology'] + ')' if r0['topology'] else ''}; "
            f"analytic {r0['flops_per_step'] / 1e12:.3g} TFLOP per step")
    cols = ["mesh", "params", "optim", "ema", "batch", "xla_args", "xla_out", "xla_temp", "total",
            "GFLOP", "xla_GFLOP", "comm_MiB"]
    lines = [head, "per device (MiB; GFLOP per step):", " | ".join(f"{c:>22}" if c == "mesh" else f"{c:>9}" for c in cols)]
    for r in reports:
        d = r["per_device"]
        cells = [format_mesh(r["mesh"].values()), _mib(d["params_bytes"]), _mib(d["optimizer_bytes"]),
                 _mib(d["ema_bytes"]), _mib(d["batch_bytes"]), _mib(d["argument_bytes"]), _mib(d["output_bytes"]),
                 _mib(d["temp_bytes"]), _mib(d["total_bytes"]), f"{d['analytic_flops'] / 1e9:.4g}",
                 f"{d['xla_flops'] / 1e9:.4g}", _mib(sum(d["collective_bytes"].values()))]
        lines.append(" | ".join(f"{c:>22}" if i == 0 else f"{c:>9}" for i, c in enumerate(cells)))
    for r in reports:
        for text in r.get("replicated", []):
            lines.append(f"  {format_mesh(r['mesh'].values())}: replicated, {text}")
    keys = list(accelerators or r0["estimates"])
    lines.append("estimates (roofline, no overlap of collectives): step ms / MFU / fits in HBM")
    lines.append(" | ".join([f"{'mesh':>22}"] + [f"{k:>22}" for k in keys]))
    for r in reports:
        cells = [f"{format_mesh(r['mesh'].values()):>22}"]
        for k in keys:
            e = r["estimates"][k]
            cells.append(f"{e['step_s'] * 1e3:9.2f} {e['mfu']:6.1%} {'yes' if e['fits'] else 'NO':>4}")
        lines.append(" | ".join(f"{c:>22}" if i else c for i, c in enumerate(cells)))
    return "\n".join(lines)


def set_mesh(config: Any, mesh: dict) -> Any:
    """A copy of `config` with the given mesh axes (others as the config has them)."""
    config = config.copy_and_resolve_references()
    for name, value in mesh.items():
        config.mesh[name] = int(value)
    return config


def default_meshes(config: Any, num_devices: int, count: int = 2) -> list[dict]:
    """Up to `count` meshes that fit: the most data-parallel one, then the ones sharding
    the parameters over the most devices (fsdp x tensor)."""
    task = load_task(config)
    batch = abstract_batch(task, int(config.train.batch_size))
    dims = sharded_dims(jax.eval_shape(task.init_params, jax.random.PRNGKey(0), batch))
    ok = valid_meshes(num_devices, int(config.train.batch_size), dims)
    first = sorted(ok, key=lambda s: (-s[0], s[2]))[:1]
    rest = sorted((s for s in ok if s not in first), key=lambda s: (-(s[1] * s[2]), s[2]))
    return [dict(zip(sharding_lib.MESH_AXES, s)) for s in first + rest[: count - 1]]

