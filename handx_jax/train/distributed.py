"""Multi-host start-up: call `jax.distributed.initialize()` when the environment asks for it."""

from __future__ import annotations

import os

_INITIALIZED = False


def wants_distributed(env=None) -> bool:
    """True under HANDX_DISTRIBUTED=1, a multi-task SLURM job, or a multi-worker TPU VM."""
    env = os.environ if env is None else env
    flag = env.get("HANDX_DISTRIBUTED")
    if flag is not None:
        return flag.lower() in ("1", "true", "yes")
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
        return True
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    return len([h for h in hosts.split(",") if h]) > 1


def maybe_initialize_distributed(force: bool | None = None) -> bool:
    """Initialise the JAX multi-process runtime once if wanted; returns whether it is on.

    Coordinator address, process count and index come from the environment (SLURM and TPU
    are auto-detected by JAX; otherwise set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
    JAX_PROCESS_ID).
    """
    global _INITIALIZED
    if _INITIALIZED:
        return True
    if not (wants_distributed() if force is None else force):
        return False
    import jax

    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                      num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                      process_id=int(os.environ["JAX_PROCESS_ID"]))
    jax.distributed.initialize(**kwargs)
    _INITIALIZED = True
    return True
