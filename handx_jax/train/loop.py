"""The generic training loop: mesh, sharded jitted step, logs, checkpoints, resume.

Order per step: dispatch the jitted step (asynchronous), fetch the next batch on the host
while the device works, then read the *previous* step's metrics (so the host never waits
for the step it just launched), log them and check them for NaN/Inf.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import threading
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
import optax
from absl import flags

from handx_jax.train import artifacts
from handx_jax.train import checkpoint as ckpt_lib
from handx_jax.train import flops as flops_lib
from handx_jax.train.heldout import HeldOutLoss
from handx_jax.train import metrics_log
from handx_jax.train import optim
from handx_jax.train import run_lock
from handx_jax.train import config_checks
from handx_jax.train import sharding as sharding_lib
from handx_jax.train import state as state_lib
from handx_jax.train.task import load_task


# Optional trainer fields (beyond the contract's required ones) and their defaults.
TRAIN_DEFAULTS = {"peak_flops": 0.0, "progress": True, "async_checkpoint": True, "min_lr_ratio": 0.0,
                  "b1": 0.9, "b2": 0.999, "eps": 1e-8, "eval_every": 0, "eval_batches": 8, **metrics_log.LOGGING_DEFAULTS}


def add_trainer_defaults(config: Any) -> Any:
    """Give `config.train` every optional trainer field, so `--config.train.X=v` can set it."""
    for key, value in TRAIN_DEFAULTS.items():
        if key not in config.train:
            config.train[key] = value
    if "allow_changed" not in config:
        config.allow_changed = ""
    return config


# Fields naming the frozen inputs a run was trained on (e.g. the text tower and tokenizer
# behind its caption embeddings): a resume that would read other inputs is refused. The task
# fills them in when it builds its inputs (a fresh command line leaves them empty), so an
# empty value is compared again once the task has filled it.
IDENTITY_FIELDS = ("model.text_key", "model.fsq_key")


def check_resume_identity(workdir: str, config: Any) -> None:
    """Refuse to resume `workdir` when an identity field differs from its config.json."""
    import json

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path) or not _has_checkpoint(workdir):
        return
    with open(path) as f:
        stored = json.load(f)
    for field in IDENTITY_FIELDS:
        section, name = field.split(".")
        old = (stored.get(section) or {}).get(name)
        new = config[section].get(name) if section in config else None
        if old and new and new != old:  # empty: not filled yet (checked again after the task fills it)
            raise ValueError(f"{workdir} was trained with {field}={old!r}; resuming it with {new!r} would change its "
                             "inputs mid-run (the text tower or tokenizer changed): use a new workdir")


# Fields a resume may change: how long the run goes and how it logs, checkpoints, evaluates
# and lays itself out on devices. Every other field changes what the run means and is
# refused unless named in `allow_changed` (a comma list, e.g. --config.allow_changed=train.lr).
SAFE_RESUME_FIELDS = ("train.steps", "train.log_every", "train.ckpt_every", "train.keep_checkpoints",
                      "train.eval_every", "train.eval_batches", "train.progress", "train.async_checkpoint",
                      "train.peak_flops", "train.tensorboard", "train.wandb", "mesh", "allow_changed",
                      "model.text_embeddings_path")
RESUME_LOG = "resume_log.jsonl"


class ResumeConfigError(ValueError):
    """Resuming with a config that changes the meaning of the run; the message has the diff."""


def _flatten(tree: Any, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _is_under(field: str, names) -> bool:
    return any(field == n or field.startswith(n + ".") for n in names)


def _same(field: str, old: Any, new: Any) -> bool:
    if field == "data.dir" and isinstance(old, str) and isinstance(new, str):
        return os.path.abspath(old) == os.path.abspath(new)
    return old == new


def _task_safe_fields(config: Any) -> tuple[str, ...]:
    """A task class may name more fields a resume may change (`resume_safe_fields`)."""
    from handx_jax.train.task import resolve

    try:
        return tuple(getattr(resolve(config.task), "resume_safe_fields", ()))
    except Exception:  # noqa: BLE001 - an unloadable task fails later, with its own message
        return ()


def _has_checkpoint(workdir: str) -> bool:
    """A finished checkpoint directory exists (a plain listing: opening an orbax manager is a
    collective that other processes of a multi-process run would not join here)."""
    folder = ckpt_lib.checkpoint_dir(workdir)
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def resume_changes(workdir: str, config: Any) -> tuple[list[dict], list[dict]]:
    """`(refused, allowed)` differences between `workdir`'s config.json and `config`, when the
    directory holds a checkpoint to resume (else both empty). Each is `{field, old, new}`."""
    import json

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path) or not _has_checkpoint(workdir):
        return [], []
    with open(path) as f:
        stored = _flatten(json.load(f))
    new = _flatten(json.loads(json.dumps(ckpt_lib.config_to_dict(config))))
    allowed_names = [n.strip() for n in str(new.get("allow_changed") or "").split(",") if n.strip()]
    safe = SAFE_RESUME_FIELDS + tuple(_task_safe_fields(config))
    defaults = {f"train.{k}": v for k, v in _flatten(TRAIN_DEFAULTS).items()} | {"allow_changed": ""}
    refused, allowed = [], []
    for field in sorted(set(stored) | set(new)):
        missing = object()
        old, value = stored.get(field, missing), new.get(field, missing)
        if old is missing and defaults.get(field, missing) == value:
            continue  # a field added since the run started, at the value the run had implicitly
        if _same(field, old, value):
            continue
        if field in IDENTITY_FIELDS and value in (missing, None, ""):
            continue  # the task fills it from its inputs; check_resume_identity compares it then
        change = {"field": field, "old": None if old is missing else old, "new": None if value is missing else value}
        if _is_under(field, safe):
            allowed.append(change)
        elif _is_under(field, allowed_names):
            allowed.append({**change, "override": True})
        else:
            refused.append(change)
    return refused, allowed


def check_resume_config(workdir: str, config: Any) -> list[dict]:
    """Refuse (ResumeConfigError, nothing written) a resume whose config changes the meaning of
    the run; returns the allowed changes, which `record_resume` logs."""
    check_resume_identity(workdir, config)
    refused, allowed = resume_changes(workdir, config)
    if refused:
        diff = "\n".join(f"  {c['field']}: {c['old']!r} -> {c['new']!r}" for c in refused)
        names = ",".join(c["field"] for c in refused)
        raise ResumeConfigError(
            f"{workdir} holds a run with another config; resuming it would change what it means:\n{diff}\n"
            f"config.json is left as it was. Use a new --workdir, or, for a deliberate change, "
            f"--config.allow_changed={names}")
    return allowed


def record_resume(workdir: str, step: int, changes: list[dict]) -> None:
    """Append one line to `<workdir>/resume_log.jsonl`: when, from which step, what changed."""
    import json

    record = {"time": time.time(), "step": int(step), "changes": changes}
    with open(os.path.join(workdir, RESUME_LOG), "a") as f:
        f.write(json.dumps(record, default=str) + "\n")


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN/Inf; the message names the step, the terms and the last checkpoint."""


def make_train_step(task, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    ema_decay: float) -> Callable:
    """Pure `(state, batch, rng) -> (state, metrics)`; `rng` is this step's key."""

    def train_step(state: state_lib.TrainState, batch: Any, rng: jax.Array):
        def loss_fn(params):
            return task.loss(params, batch, rng)

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = optim.ema_update(state.ema_params, params, ema_decay)
        metrics = {"loss": loss, **{k: v for k, v in terms.items() if k != "loss"},
                   "grad_norm": grad_norm, "lr": schedule(state.step)}
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                                  ema_params=ema)
        return new_state, metrics

    return train_step


class Trainer:
    """Builds everything a run needs from a config; `train()` below drives it."""

    def __init__(self, config: Any, workdir: str, devices=None, example_batch: dict | None = None):
        """`example_batch` (process-local numpy) skips building the input pipeline; benchmarks
        use it to time the step on stand-in data."""
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        self.config, self.workdir = config, workdir
        tc = config.train
        self.task = load_task(config)
        self.mesh = sharding_lib.make_mesh(config.mesh, devices)
        self.batch_size = int(tc.batch_size)
        sharding_lib.check_batch_size(self.batch_size, self.mesh)
        self.tx, self.schedule = optim.make_optimizer(tc)
        self.process_count, self.process_index = jax.process_count(), jax.process_index()
        self.batch_sharding = sharding_lib.batch_sharding(self.mesh)
        if example_batch is None:
            self.dataset = self.task.train_inputs(
                batch_size=self.batch_size // self.process_count, seed=int(tc.seed),
                shard_index=self.process_index, shard_count=self.process_count)
            example_batch = next(iter(self.dataset))
        else:
            self.dataset = None
        example = self.to_global(example_batch)
        self.batch_spec = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.batch_sharding), example)
        self.rng = jax.random.PRNGKey(int(tc.seed))
        self.abstract_state, self.state_shardings = state_lib.abstract_state(
            self.task, self.tx, self.rng, self.batch_spec, self.mesh)
        self.example = example
        self.replicated = sharding_lib.replicated(self.mesh)
        step_fn = make_train_step(self.task, self.tx, self.schedule, float(tc.get("ema_decay", 0.999)))
        batch_shardings = jax.tree_util.tree_map(lambda _: self.batch_sharding, self.batch_spec)
        self.jitted_step = jax.jit(
            step_fn, in_shardings=(self.state_shardings, batch_shardings, self.replicated),
            out_shardings=(self.state_shardings, self.replicated), donate_argnums=(0,))

    @contextlib.contextmanager
    def context(self):
        """Mesh + logical rules: needed wherever the model is traced."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(sharding_lib.LOGICAL_RULES):
            yield

    def to_global(self, local_batch: dict) -> dict:
        """Process-local numpy batch -> global jax arrays split over ('data', 'fsdp')."""
        sharding = sharding_lib.batch_sharding(self.mesh)
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)

    def compile(self):
        """Ahead-of-time compile of the step (surfaces sharding/memory errors before training)."""
        key_spec = jax.ShapeDtypeStruct(self.rng.shape, self.rng.dtype, sharding=self.replicated)
        with self.context():
            return self.jitted_step.lower(self.abstract_state, self.batch_spec, key_spec).compile()

    def init_state(self) -> state_lib.TrainState:
        with self.context():
            return state_lib.create_train_state(self.task, self.tx, self.rng, self.example,
                                                self.state_shardings)


class _StopFlag:
    """Whether to save a checkpoint and return before the next step.

    One process: our SIGTERM handler sets it. Several processes: they must stop at the same
    step or the next collective hangs, so JAX's preemption sync (the distributed runtime
    catches SIGTERM on any process and the processes agree on a step) decides, and our
    handler stays out of its way.
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._multi = jax.process_count() > 1

    def __enter__(self):
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def stop_before(self, step: int) -> bool:
        """Call once per step, with increasing `step`, on every process."""
        if self._multi:
            from jax.experimental import multihost_utils

            self.requested = self.requested or multihost_utils.reached_preemption_sync_point(int(step))
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train(config: Any, workdir: str, *, devices=None) -> dict:
    """Train `config` in `workdir` (resuming from its newest checkpoint); returns the last
    logged metrics (plus `preempted: True` when stopped by SIGTERM).

    The first process holds the directory's run lock throughout (`run_lock.RunLockedError`
    when another process holds it); a resume whose config changes the meaning of the run
    raises `ResumeConfigError` before anything is written."""
    config_checks.check_train_config(config)  # bad fields refused before any write
    os.makedirs(workdir, exist_ok=True)
    lock = run_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:
        return _train(config, workdir, devices=devices)


def _train(config: Any, workdir: str, *, devices=None) -> dict:
    tc = config.train
    changes = check_resume_config(workdir, config)
    trainer = Trainer(config, workdir, devices)
    check_resume_identity(workdir, config)  # again, with the identity fields the task filled in
    is_main = trainer.process_index == 0
    if is_main:
        artifacts.snapshot(workdir, config)  # the run's copies; a changed dataset file refuses a resume
        metrics_log.write_config(workdir, config)
    compiled = trainer.compile()
    heldout = HeldOutLoss(trainer, config)
    iterator = iter(trainer.dataset)
    restored = ckpt_lib.restore_newest(workdir, trainer.abstract_state)  # sets unreadable ones aside
    manager = ckpt_lib.make_manager(workdir, keep=tc.get("keep_checkpoints", 3),
                                    async_save=bool(tc.get("async_checkpoint", True)))
    latest = None
    if restored is not None:
        state, iterator_state, latest = restored
        iterator.set_state(iterator_state)
        if is_main and changes:
            record_resume(workdir, latest, changes)
    else:
        state = trainer.init_state()
    total = int(tc.steps)
    step = int(jax.device_get(state.step))
    base_rng = np.asarray(jax.device_get(state.rng))
    num_params = state_lib.count_params(state.params)
    flops_per_example = float(trainer.task.flops_per_example())
    peak = flops_lib.peak_flops(tc.get("peak_flops", 0.0))
    log_every = max(int(tc.get("log_every", 10)), 1)
    ckpt_every = max(int(tc.get("ckpt_every", 1000)), 1)
    writer = metrics_log.MetricsWriter(workdir, resume_step=step, enabled=is_main)
    last_good = ckpt_lib.checkpoint_dir(workdir) + f"/{latest}" if latest is not None else None
    progress = _progress(total, step, enabled=is_main and bool(tc.get("progress", True)))

    def next_batch():
        local = next(iterator)
        return trainer.to_global(local), copy.deepcopy(iterator.get_state())

    timer = {"t": time.perf_counter(), "step": step}
    last = {}

    def handle(pending, force_log=False):
        """Fetch one step's metrics to the host, guard them, log them."""
        nonlocal last
        done_step, metrics_device = pending
        metrics = {k: float(v) for k, v in jax.device_get(metrics_device).items()}
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteLossError(
                f"non-finite values at step {done_step} in {bad} "
                f"({', '.join(f'{k}={metrics[k]}' for k in bad)}); last good checkpoint: "
                f"{last_good or 'none (no checkpoint saved yet)'}; lower train.lr or raise "
                f"train.warmup_steps, then resume from that checkpoint")
        now = time.perf_counter()
        elapsed_steps = done_step - timer["step"]
        if done_step % log_every == 0 or done_step == total or force_log:
            step_time = (now - timer["t"]) / max(elapsed_steps, 1)
            samples = done_step * trainer.batch_size
            throughput = trainer.batch_size / step_time if step_time > 0 else float("nan")
            record = {"step": done_step, **metrics, "params": num_params, "samples_seen": samples,
                      "flops_seen": flops_per_example * samples, "step_time": step_time,
                      "examples_per_s": throughput,
                      "mfu": flops_per_example * throughput / peak, "wall_time": time.time()}
            writer.write(record)
            last = record
            timer["t"], timer["step"] = now, done_step
        progress.update(done_step - progress.n)
        progress.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)

    preempted = False
    try:
        with _StopFlag() as stop:
            data_state = copy.deepcopy(iterator.get_state())
            if step < total:
                batch, batch_state = next_batch()
            pending = None
            while step < total:
                if stop.stop_before(step):
                    preempted = True
                    break
                key = jax.device_put(jax.random.fold_in(base_rng, step), trainer.replicated)
                state, metrics = compiled(state, batch, key)
                step += 1
                data_state = batch_state
                if step < total:
                    batch, batch_state = next_batch()   # host work overlaps the device step
                if pending is not None:
                    handle(pending)
                pending = (step, metrics)
                if step % ckpt_every == 0 or step == total:
                    handle(pending, force_log=step == total)
                    pending = None
                    ckpt_lib.save(manager, step, state, data_state, config, workdir)
                    last_good = ckpt_lib.checkpoint_dir(workdir) + f"/{step}"
                if heldout.due(step, total):
                    if pending is not None:
                        handle(pending, force_log=True)
                        pending = None
                    samples = step * trainer.batch_size
                    writer.write({"step": step, **heldout(state.ema_params), "samples_seen": samples,
                                  "flops_seen": flops_per_example * samples, "wall_time": time.time()})
            if pending is not None:
                handle(pending, force_log=True)
                pending = None
            if preempted and manager.latest_step() != step:
                ckpt_lib.save(manager, step, state, data_state, config, workdir)
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        progress.close()
    out = dict(last)
    out["final_step"] = step
    if preempted:
        out["preempted"] = True
    return out


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step",
                dynamic_ncols=True)
