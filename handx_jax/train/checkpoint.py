"""orbax checkpoints of the train state, the grain iterator position and the config.

Layout: `<workdir>/checkpoints/<step>/{state,data,config}`. The state is always restored
into an abstract target that carries shardings, so a checkpoint written on one mesh loads
onto any other mesh or device count. Multi-host: the orbax `data` item holds process 0's
iterator state; other processes keep theirs beside it in `iterator_states/`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


class _ReadOnlyNotices(logging.Filter):
    """Drops orbax's warnings that a read-only manager is read-only: restoring for sampling
    or evaluation asks for exactly that, once per checkpoint read."""

    PREFIXES = ("Given directory is read only", "CheckpointManagerOptions.read_only=True")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


_READ_ONLY_FILTER = _ReadOnlyNotices()


def make_manager(workdir: str, keep: int | None = 3, async_save: bool = True,
                 read_only: bool = False) -> ocp.CheckpointManager:
    """CheckpointManager over `<workdir>/checkpoints` keeping the newest `keep` steps."""
    if read_only:
        logging.getLogger("absl").addFilter(_READ_ONLY_FILTER)  # a no-op when already added
    options = ocp.CheckpointManagerOptions(
        max_to_keep=(int(keep) if keep and not read_only else None), create=not read_only,
        enable_async_checkpointing=async_save, read_only=read_only,
        cleanup_tmp_directories=not read_only, save_interval_steps=0 if read_only else 1)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_handlers=handlers)


def config_to_dict(config: Any) -> dict:
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config, default=str))


def _jsonable_iterator_state(state: Any) -> Any:
    if isinstance(state, bytes):
        return {"__bytes__": state.decode("latin-1")}
    return json.loads(json.dumps(state))


def _iterator_state_from_json(state: Any) -> Any:
    if isinstance(state, dict) and set(state) == {"__bytes__"}:
        return state["__bytes__"].encode("latin-1")
    return state


def _side_state_path(workdir: str, step: int, process: int) -> str:
    return os.path.join(os.path.abspath(workdir), "iterator_states", f"step_{step}_process_{process}.json")


def save(manager: ocp.CheckpointManager, step: int, state: Any, iterator_state: Any,
         config: Any, workdir: str) -> None:
    """Save (asynchronously where the manager allows) state + iterator position + config."""
    data = {"process_count": jax.process_count(),
            "iterator": _jsonable_iterator_state(copy.deepcopy(iterator_state))}
    if jax.process_count() > 1:
        path = _side_state_path(workdir, step, jax.process_index())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data),
        config=ocp.args.JsonSave(config_to_dict(config))))


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any, workdir: str):
    """(state, iterator_state, config dict) of `step`; state lands in the target's shardings."""
    out = manager.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
        config=ocp.args.JsonRestore()))
    data = out["data"]
    if jax.process_count() > 1:
        with open(_side_state_path(workdir, step, jax.process_index())) as f:
            data = json.load(f)
    elif int(data.get("process_count", 1)) != 1:
        raise ValueError(
            f"checkpoint {step} in {checkpoint_dir(workdir)} was written by "
            f"{data['process_count']} processes; resume it with the same number of processes")
    return out["state"], _iterator_state_from_json(data["iterator"]), out["config"]


class CheckpointError(RuntimeError):
    """No checkpoint of a run directory could be read; the message says why for each."""


SKIPPED_DIR = "checkpoints_unreadable"


def _failure(workdir: str, step: int, err: BaseException) -> str:
    """Why checkpoint `step` did not restore, naming an emptied file when there is one."""
    roots = [os.path.join(checkpoint_dir(workdir), str(step))]
    side = os.path.dirname(_side_state_path(workdir, step, 0))
    empty = []
    for root in roots:
        for folder, _, files in os.walk(root):
            empty += [os.path.join(folder, f) for f in files if os.path.getsize(os.path.join(folder, f)) == 0]
    if os.path.isdir(side):
        empty += [os.path.join(side, f) for f in os.listdir(side)
                  if f.startswith(f"step_{step}_") and os.path.getsize(os.path.join(side, f)) == 0]
    first = (str(err).strip().splitlines() or [""])[0][:300]
    reason = f"{type(err).__name__}: {first}"
    return (f"empty file {', '.join(sorted(empty))}; " + reason) if empty else reason


def _exists_for_all(path: str) -> bool:
    """Whether `path` is a directory, as process 0 sees it, for every process: opening a
    manager is a collective (orbax barriers), and process 0 may create `checkpoints/` while
    a slower process still looks, so each deciding alone can deadlock or mismatch barriers."""
    exists = os.path.isdir(path)
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        exists = bool(multihost_utils.broadcast_one_to_all(np.int32(exists)))
    return exists


def restore_newest(workdir: str, abstract_state: Any):
    """`(state, iterator_state, step)` of the newest checkpoint that restores, or None when
    there is none. An unreadable one (truncated, emptied, corrupt) is reported on stderr and
    moved to `<workdir>/checkpoints_unreadable/` (so a later save of that step can proceed);
    CheckpointError when every checkpoint fails."""
    import sys
    import time

    if not _exists_for_all(checkpoint_dir(workdir)):
        return None
    steps = all_steps(workdir)
    if not steps:
        return None
    manager = make_manager(workdir, keep=None, async_save=False, read_only=True)
    skipped = []
    try:
        for step in reversed(steps):
            try:
                state, iterator_state, _ = restore(manager, step, abstract_state, workdir)
            except Exception as err:  # noqa: BLE001 - any unreadable checkpoint falls back
                reason = _failure(workdir, step, err)
                skipped.append((step, reason))
                print(f"checkpoint {step} in {checkpoint_dir(workdir)} is unreadable, skipped ({reason})",
                      file=sys.stderr)
                continue
            if skipped:
                print(f"resuming from checkpoint {step}, the newest readable one", file=sys.stderr)
                if jax.process_index() == 0:
                    _set_aside(workdir, [s for s, _ in skipped], time.strftime("%Y%m%d-%H%M%S"))
            return state, iterator_state, step
    finally:
        manager.close()
    raise CheckpointError(f"no checkpoint in {checkpoint_dir(workdir)} restores: "
                          + "; ".join(f"{s}: {r}" for s, r in skipped))


def _set_aside(workdir: str, steps: list[int], stamp: str) -> None:
    for step in steps:
        target = os.path.join(os.path.abspath(workdir), SKIPPED_DIR, f"{step}-{stamp}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(checkpoint_dir(workdir), str(step)), target)


def all_steps(workdir: str) -> list[int]:
    if not os.path.isdir(checkpoint_dir(workdir)):
        return []
    manager = make_manager(workdir, keep=None, async_save=False, read_only=True)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def restore_params(workdir: str, step: int | None = None, ema: bool = True,
                   sharding: jax.sharding.Sharding | None = None):
    """(config, params, step) from a run directory, for sampling and evaluation.

    Reads the newest step unless `step` is given (an unreadable newest checkpoint is skipped
    with a message, falling back to the previous one); `ema=True` gives the EMA parameters.
    Arrays land replicated on `sharding` (default: the first local device), whatever mesh
    wrote them.
    """
    import sys

    if step is not None:
        return _restore_params_at(workdir, step, ema, sharding)
    steps = all_steps(workdir) if os.path.isdir(checkpoint_dir(workdir)) else []
    for newer in reversed(steps[1:]):
        try:
            return _restore_params_at(workdir, newer, ema, sharding)
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint falls back
            print(f"checkpoint {newer} in {checkpoint_dir(workdir)} is unreadable, skipped "
                  f"({_failure(workdir, newer, err)})", file=sys.stderr)
    return _restore_params_at(workdir, steps[0] if steps else None, ema, sharding)


def _restore_params_at(workdir: str, step: int | None, ema: bool, sharding):
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise FileNotFoundError(f"no checkpoints in {checkpoint_dir(workdir)}: train first")
    manager = make_manager(workdir, keep=None, async_save=False, read_only=True)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"no finished checkpoint in {checkpoint_dir(workdir)}")
        if step is None:
            step = steps[-1]
        elif int(step) not in steps:
            raise FileNotFoundError(f"checkpoint step {step} not in {checkpoint_dir(workdir)}; have {steps}")
        meta = manager.item_metadata(int(step))["state"]
        config = manager.restore(int(step), args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    finally:
        manager.close()
    which = "ema_params" if ema else "params"
    tree = meta.tree if hasattr(meta, "tree") else meta
    if which not in tree:
        raise KeyError(f"checkpoint step {step} in {checkpoint_dir(workdir)} has no {which!r}; it holds {sorted(tree)}")
    target_sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    # Only the parameters asked for are read: the optimizer moments and the other copy of the
    # weights (about three quarters of a train state under Adam with EMA) stay on disk.
    abstract = {which: jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=target_sharding), tree[which])}
    reader = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    try:
        state = reader.restore(os.path.join(checkpoint_dir(workdir), str(int(step)), "state"),
                               args=ocp.args.PyTreeRestore(item=abstract, partial_restore=True,
                                                           restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)))
    finally:
        reader.close()
    params = state[which]
    return ml_collections.ConfigDict(config), params, int(step)
