"""Mesh resolution, divisibility messages, logical rules and the golden parameter shardings."""

import jax
import pytest
from jax.sharding import PartitionSpec as P

from handx_jax.train import optim, sharding, state
from tests.train import toy_task


def test_logical_rules_match_the_contract():
    assert dict(sharding.LOGICAL_RULES) == {
        "batch": ("data", "fsdp"), "embed": "fsdp", "mlp": "tensor", "heads": "tensor", "kv": None,
        "vocab": "tensor", "length": None, "feature": None, "joints": None}


def test_mesh_shape_fills_minus_one():
    assert sharding.mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
    assert sharding.mesh_shape({"data": 2, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    assert sharding.mesh_shape({"data": 1, "fsdp": 1, "tensor": -1}, 1) == (1, 1, 1)


@pytest.mark.parametrize("mesh_cfg,devices,fragment", [
    ({"data": 2, "fsdp": 2, "tensor": 2}, 4, "needs 8 devices but 4 are available"),
    ({"data": -1, "fsdp": -1, "tensor": 1}, 8, "only one mesh axis may be -1"),
    ({"data": -1, "fsdp": 3, "tensor": 1}, 8, "does not divide 8"),
    ({"data": 0, "fsdp": 1, "tensor": 1}, 8, "positive or -1"),
])
def test_mesh_errors_say_what_to_change(mesh_cfg, devices, fragment):
    with pytest.raises(sharding.MeshError, match=fragment):
        sharding.mesh_shape(mesh_cfg, devices)


def test_batch_size_must_divide_over_data_and_fsdp():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    with pytest.raises(sharding.MeshError) as err:
        sharding.check_batch_size(30, mesh)
    assert "batch_size 30 is not divisible by data*fsdp = 4: use a multiple of 4" in str(err.value)
    sharding.check_batch_size(32, mesh)


def test_make_mesh_axis_types_are_auto():
    mesh = sharding.make_mesh({"data": -1, "fsdp": 2, "tensor": 2})
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_uneven_dimension_falls_back_to_replicated():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert sharding.logical_to_mesh_spec(P("embed", "mlp"), (32, 64), mesh) == P("fsdp", "tensor")
    assert sharding.logical_to_mesh_spec(P("embed", "mlp"), (5, 64), mesh) == P(None, "tensor")
    assert sharding.logical_to_mesh_spec(P("heads", "embed"), (3, 32), mesh) == P(None, "fsdp")


# Golden shardings of the toy transformer (2 layers, d 32, 4 heads, ff 64, 6 features) on
# data=2, fsdp=2, tensor=2: every name is the contract's rule applied to the boxed names.
GOLDEN_TOY = {
    "Dense_0/kernel": P(None, "fsdp"), "Dense_0/bias": P("fsdp"),
    "Dense_1/kernel": P("fsdp"), "Dense_1/bias": P(),
    **{f"Block_{i}/{k}": v for i in range(2) for k, v in {
        "LayerNorm_0/scale": P("fsdp"), "LayerNorm_0/bias": P("fsdp"),
        "qkv": P("fsdp", None, "tensor"), "out": P("tensor", None, "fsdp"),
        "Dense_0/kernel": P("fsdp", "tensor"), "Dense_0/bias": P("tensor"),
        "Dense_1/kernel": P("tensor", "fsdp"), "Dense_1/bias": P("fsdp")}.items()},
}


def test_golden_toy_parameter_shardings():
    config = toy_task.get_config()
    task = toy_task.ToyTask(config)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    tx, _ = optim.make_optimizer(config.train)
    batch = {"x": jax.ShapeDtypeStruct((8, 8, 6), "float32"), "y": jax.ShapeDtypeStruct((8, 8, 6), "float32")}
    _, shardings = state.abstract_state(task, tx, jax.random.PRNGKey(0), batch, mesh)
    specs = state.param_specs(shardings)
    assert specs == GOLDEN_TOY
    # optimizer moments and EMA follow their parameters
    mu = shardings.opt_state[1][0].mu
    assert mu["Block_0"]["qkv"].spec == P("fsdp", None, "tensor")
    assert shardings.ema_params["Block_1"]["out"].spec == P("tensor", None, "fsdp")
    assert shardings.step.spec == P()
