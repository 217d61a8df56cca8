"""Train state (params, optimizer state, EMA params, step, base rng) and its shardings.

Shardings come from the task's boxed logical names: the init is traced with
`jax.eval_shape` (no FLOPs, no memory), the boxes give PartitionSpecs, and the concrete
init is then jitted straight into those shardings.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from handx_jax.train import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: optimizer updates applied so far
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array           # base key; step keys are fold_in(rng, step)


def _boxed_init(task, tx: optax.GradientTransformation, rng: jax.Array, batch: Any) -> TrainState:
    """Init keeping nn.Partitioned boxes everywhere (optimizer moments inherit them)."""
    init_rng, state_rng = jax.random.split(rng)
    boxed = task.init_params(init_rng, batch)
    return TrainState(step=jnp.zeros((), jnp.int32), params=boxed, opt_state=tx.init(boxed),
                      ema_params=boxed, rng=state_rng)


def abstract_state(task, tx, rng: jax.Array, batch: Any, mesh: jax.sharding.Mesh):
    """(abstract state with shardings attached, tree of NamedShardings) without computing."""
    boxed = jax.eval_shape(lambda r, b: _boxed_init(task, tx, r, b), rng, batch)
    shardings = sharding_lib.tree_shardings(boxed, mesh)
    shapes = nn.unbox(boxed)
    abstract = jax.tree_util.tree_map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
    return abstract, shardings


def create_train_state(task, tx, rng: jax.Array, batch: Any, shardings: Any) -> TrainState:
    """Concrete initial state, created directly in its shardings."""
    init = jax.jit(lambda r, b: nn.unbox(_boxed_init(task, tx, r, b)), out_shardings=shardings)
    with jax.set_mesh(_mesh_of(shardings)):
        return init(rng, batch)


def count_params(params: Any) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params)))


def param_specs(shardings: TrainState) -> dict:
    """Flat {'a/b/kernel': PartitionSpec} of the parameters (for golden sharding tests)."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shardings.params), sep="/")
    return {k: v.spec for k, v in flat.items()}


def _mesh_of(shardings: Any) -> jax.sharding.Mesh:
    return jax.tree_util.tree_leaves(shardings)[0].mesh
