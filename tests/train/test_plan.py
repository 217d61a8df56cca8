"""`handx plan` / `handx sweep plan`: meshes refused with the nearest that fit, collective
accounting, the roofline, and planned per-device bytes against a real 8-device run."""

import importlib.util
import json

import jax
import pytest

from handx_jax import cli, configlib
from handx_jax.train import loop, plan as plan_lib

TINY = "configs/diffusion.py:size=T,runlocal"
TINY_AR = "configs/autoregressive.py:size=T,runlocal"  # no tokenizer or data on disk: shapes only


@pytest.fixture(scope="module", params=[TINY, TINY_AR], ids=["diffusion", "autoregressive"])
def planned(request, tmp_path_factory):
    """The CLI's plan of a tiny config of each family on 8 fake devices over a 2x2x2 mesh."""
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    rc = cli.main(["plan", "--config", request.param, "--devices", "8", "--mesh", "data=2,fsdp=2,tensor=2",
                   "--json", str(out)])
    assert rc == 0
    payload = json.loads(out.read_text())
    assert payload["config"] == request.param
    return payload["plans"][0] | {"spec": request.param}


def _bytes_on(tree, device) -> int:
    """Bytes of a pytree of jax arrays that live on `device`."""
    return sum(shard.data.nbytes for leaf in jax.tree_util.tree_leaves(tree)
               for shard in leaf.addressable_shards if shard.device == device)


def test_planned_argument_bytes_match_a_real_8_device_run(planned):
    config = configlib.load_config(planned["spec"])
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 2, 2, 2
    task = loop.load_task(config)
    trainer = loop.Trainer(config, "", example_batch=task.dummy_batch(int(config.train.batch_size)))
    state = trainer.init_state()
    key = jax.device_put(jax.random.PRNGKey(0), trainer.replicated)
    per_device = [_bytes_on((state, trainer.example, key), d) for d in trainer.mesh.devices.flat]
    assert len(set(per_device)) == 1  # even shardings: every device holds the same
    real = per_device[0]
    d = planned["per_device"]
    assert abs(d["argument_bytes"] - real) / real < 0.05, (d["argument_bytes"], real)
    assert d["params_bytes"] == _bytes_on(state.params, trainer.mesh.devices.flat[0])
    assert d["optimizer_bytes"] == _bytes_on(state.opt_state, trainer.mesh.devices.flat[0])
    assert d["params_bytes"] < 4 * planned["params"]  # fsdp x tensor shards the parameters


def test_plan_reports_flops_and_estimates(planned):
    d = planned["per_device"]
    assert planned["num_devices"] == 8 and planned["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    assert d["analytic_flops"] == pytest.approx(planned["flops_per_step"] / 8)
    assert d["xla_flops"] > d["analytic_flops"]  # XLA counts element-wise work too
    assert sum(d["collective_bytes"].values()) > 0  # fsdp and tensor need collectives
    assert d["total_bytes"] == d["argument_bytes"] + d["output_bytes"] - d["alias_bytes"] + d["temp_bytes"]
    assert set(planned["estimates"]) == set(plan_lib.ACCELERATORS)
    for est in planned["estimates"].values():
        assert est["fits"] and 0 < est["mfu"] <= 1 and est["step_s"] > 0


def test_bad_mesh_is_refused_with_the_nearest_meshes_that_work(capsys):
    rc = cli.main(["plan", "--config", "configs/diffusion.py:size=L", "--devices", "8",
                   "--mesh", "data=1,fsdp=1,tensor=8"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "tensor = 8 does not divide the 'heads' axis (12)" in err
    assert "nearest meshes that work: data=2,fsdp=1,tensor=4; data=1,fsdp=2,tensor=4;" in err


def test_autoregressive_mesh_refused_for_its_heads_not_its_vocabulary(tmp_path, capsys):
    """Prefix-LM T: 2 heads, vocabulary 514 (codebook 512 + END + PAD). tensor=4 is refused
    for the heads; with 4 heads the same mesh plans, the vocabulary replicated and listed."""
    mesh = ["--devices", "8", "--mesh", "data=2,fsdp=1,tensor=4"]
    rc = cli.main(["plan", "--config", TINY_AR, *mesh])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "tensor = 4 does not divide the 'heads' axis (2)" in err and "vocab" not in err
    assert "nearest meshes that work: data=4,fsdp=1,tensor=2; data=2,fsdp=2,tensor=2;" in err

    out = tmp_path / "plan.json"
    rc = cli.main(["plan", "--config", TINY_AR, *mesh, "--json", str(out), "--config.model.num_heads=4"])
    assert rc == 0 and "replicated, tensor = 4 does not divide the 'vocab' axis (514)" in capsys.readouterr().out
    report = json.loads(out.read_text())["plans"][0]
    assert sorted(report["replicated"]) == [
        "tensor = 4 does not divide the 'vocab' axis (514) of head (64, 514)",
        "tensor = 4 does not divide the 'vocab' axis (514) of token_embedding (514, 64)"]
    # fsdp = 1 and the vocabulary replicated: every device holds the whole embedding and head
    assert report["per_device"]["params_bytes"] > 2 * 514 * 64 * 4


def test_valid_meshes_of_size_l_on_256_devices():
    """L: 12 heads (tensor | 12) and text tower width 256 (fsdp | 256); batch 64 over
    data x fsdp, so on 256 devices tensor must be 4 (golden list, derived by hand)."""
    config = configlib.load_config("configs/diffusion.py:size=L")
    task = loop.load_task(config)
    batch = plan_lib.abstract_batch(task, 64)
    dims = plan_lib.sharded_dims(jax.eval_shape(task.init_params, jax.random.PRNGKey(0), batch))
    assert plan_lib.valid_meshes(256, 64, dims) == [(1, 64, 4), (2, 32, 4), (4, 16, 4), (8, 8, 4), (16, 4, 4),
                                                      (32, 2, 4), (64, 1, 4)]
    problems = plan_lib.mesh_problems((128, 2, 1), 64, dims)
    assert problems == ["data*fsdp = 256 does not divide train.batch_size 64"]


def test_collective_bytes_from_hlo_text():
    hlo = """
  %all-reduce.1 = f32[768,3072]{1,0} all-reduce(f32[768,3072]{1,0} %p), replica_groups={{0,1}}
  %ag = (bf16[4,256]{1,0}, /*index=1*/f32[10]{0}) all-gather-start(bf16[2,256]{1,0} %x, f32[5]{0} %y)
  %rs = f32[16]{0} reduce-scatter(f32[32]{0} %z)
  %add = f32[16]{0} add(f32[16]{0} %a, f32[16]{0} %b)
"""
    assert plan_lib.collective_bytes(hlo) == {"all-reduce": 768 * 3072 * 4, "all-gather": 4 * 256 * 2 + 40,
                                              "reduce-scatter": 64}


def test_roofline_estimate():
    acc = {"X": plan_lib.Accelerator("X", bf16_flops=100.0, f32_flops=50.0, hbm_bytes=1000.0,
                                     hbm_bytes_per_s=10.0, link_bytes_per_s=4.0)}
    report = {"compute_dtype": "float32", "num_devices": 2,
              "per_device": {"xla_flops": 500.0, "analytic_flops": 400.0, "xla_bytes_accessed": 20.0,
                             "total_bytes": 1001, "collective_bytes": {"all-reduce": 8, "all-gather": 4}}}
    est = plan_lib.estimates(report, acc)["X"]
    # compute 500/50 = 10 s > memory 20/10 = 2 s; collectives (2*8 + 4)/4 = 5 s
    assert est["step_s"] == pytest.approx(15.0) and est["bound"] == "compute"
    assert est["mfu"] == pytest.approx(400.0 / 50.0 / 15.0) and not est["fits"]
    report["compute_dtype"] = "bfloat16"
    assert plan_lib.estimates(report, acc)["X"]["step_s"] == pytest.approx(5.0 + 5.0)
    report["per_device"]["xla_flops"] = 100.0  # XLA counted a loop body once: the analytic count bounds
    assert plan_lib.estimates(report, acc)["X"]["step_s"] == pytest.approx(4.0 + 5.0)


def test_sweep_plan_flags_points_over_the_memory_limit(tmp_path, capsys):
    """Three one-layer points: two differing only in data ratio (one compile), one with twice
    the batch (1.00 vs 1.46 MiB per device on 8 devices when written; the limit sits
    between), and one whose batch the mesh cannot split (refused, not compiled)."""
    sweep = tmp_path / "three.py"
    sweep.write_text(
        "import ml_collections\n"
        "def get_config(arg=None):\n"
        "    c = ml_collections.ConfigDict()\n"
        "    c.name = 'three'\n"
        "    c.runlocal = True\n"
        "    small = ['model.num_layers=1', 'model.d_model=32', 'model.mlp_dim=64']\n"
        "    point = lambda label, r, b: dict(family='diffusion', size='T', label=label, data=r, steps=10,\n"
        "                                     overrides=small + [f'train.batch_size={b}'])\n"
        "    c.points = [point('b8', 0.5, 8), point('b8', 1.0, 8), point('b16', 1.0, 16), point('b12', 1.0, 12)]\n"
        "    return c\n")
    out = tmp_path / "plan.json"
    rc = cli.main(["sweep", "plan", str(sweep), "--devices", "8", "--memory-gib", str(1.25 / 1024),
                   "--json", str(out)])
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["size"] for r in rows] == ["b8", "b8", "b16", "b12"]
    assert rows[0]["total_bytes"] == rows[1]["total_bytes"] < 1.25 * 2 ** 20 < rows[2]["total_bytes"]
    assert [r["fits"] for r in rows] == [True, True, False, False] and rc == 1
    assert "data*fsdp = 8 does not divide train.batch_size 12" in rows[3]["error"]
    table = [line for line in text.splitlines() if line.strip().startswith("diffusion-")]
    assert [line.rstrip().endswith("| yes") for line in table] == [True, True, False, False]
    assert table[2].rstrip().endswith("| NO") and "| NO: mesh" in table[3]


def test_sweep_plan_of_autoregressive_points(tmp_path):
    """paper_table3 at size T with two codebooks: one compile per codebook, with no tokenizer
    trained; vocabularies 514 and 1002 (codebooks 512 and 1000 + END + PAD) differ in the
    embedding and the head only."""
    out = tmp_path / "rows.json"
    rc = cli.main(["sweep", "plan", "configs/sweeps/paper_table3.py:sizes=T,codebooks=512/1024", "--devices", "8",
                   "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rc == 0 and [(r["family"], r["fits"]) for r in rows] == [("autoregressive", True)] * 2
    assert rows[1]["params"] - rows[0]["params"] == 2 * 64 * (1002 - 514)
    assert rows[0]["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1} and rows[0]["flops_per_step"] < rows[1]["flops_per_step"]


def test_plan_reruns_itself_when_jax_has_too_few_devices():
    """JAX already runs here with 8 devices: 64 need a fresh process, with the same arguments."""
    from handx_jax.commands import plan as plan_cmd

    assert len(jax.devices()) == 8  # JAX started (conftest's 8 devices)
    assert plan_cmd.prepare_devices(8, None) and not plan_cmd.prepare_devices(64, None)
    args = cli.build_parser().parse_args(["plan", "--config", TINY, "--devices", "64", "--mesh", "data=64"])
    args.config_overrides = ["model.dtype=bfloat16"]
    assert plan_cmd._argv(args, ["plan", "--config", TINY]) == [
        "plan", "--config", TINY, "--devices", "64", "--mesh", "data=64", "--config.model.dtype=bfloat16"]


HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


def test_topology_names():
    assert plan_lib.parse_topology("v5p:2x2x4") == (
        "v5:2x2x4", {"chip_config_name": "megacore", "chips_per_host_bounds": (2, 2, 1), "num_slices": 1}, "v5p")
    assert plan_lib.parse_topology("v5e:4x4")[::2] == ("v5e:4x4", "v5e")
    for bad in ("v5e-16", "v6e:4x4", "v4:2x2x", "v5e:0x4"):
        with pytest.raises(plan_lib.PlanError, match="expected GEN:SHAPE"):
            plan_lib.parse_topology(bad)


@pytest.mark.skipif(HAS_LIBTPU, reason="libtpu is installed")
def test_topology_without_libtpu_is_refused_in_one_line(capsys):
    rc = cli.main(["plan", "--config", TINY, "--topology", "v5e:2x2"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "--topology 'v5e:2x2': cannot describe it" in err and "tpu-plan" in err


@pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu: pip install -e '.[tpu-plan]'")
@pytest.mark.parametrize("spec", [TINY, TINY_AR], ids=["diffusion", "autoregressive"])
def test_plan_compiled_by_the_tpu_compiler_for_a_v5e_topology(spec, tmp_path):
    """The tiny config compiled by libtpu for 4 v5e chips (no TPU attached): the TPU compiler
    answers, the donated state is updated in place, and its arrays take at least their
    unpadded bytes (TPU layouts pad small arrays to tiles)."""
    out = tmp_path / "plan.json"
    rc = cli.main(["plan", "--config", spec, "--topology", "v5e:2x2", "--mesh", "data=2,fsdp=2", "--json", str(out)])
    report = json.loads(out.read_text())["plans"][0]
    d = report["per_device"]
    assert rc == 0 and report["platform"] == "tpu" and report["num_devices"] == 4
    assert report["accelerator"] == "v5e" and list(report["estimates"]) == list(plan_lib.ACCELERATORS)
    state = d["params_bytes"] + d["optimizer_bytes"] + d["ema_bytes"]
    assert d["argument_bytes"] >= state + d["batch_bytes"]
    assert d["alias_bytes"] >= state and d["output_bytes"] - d["alias_bytes"] < 2 ** 16  # outputs: state + metrics
    assert d["analytic_flops"] <= d["xla_flops"] < 1.5 * d["analytic_flops"]
    assert d["collective_bytes"].get("all-gather", 0) > 0  # fsdp gathers the parameters


@pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu: pip install -e '.[tpu-plan]'")
def test_tpu_compiler_refuses_a_step_over_hbm(tmp_path, capsys):
    """Batch 262144 of the tiny config needs ~43 GB of temporaries per v5e chip (16 GiB):
    the TPU compiler says so, and the plan reports it per mesh (exit status 1)."""
    out = tmp_path / "plan.json"
    rc = cli.main(["plan", "--config", TINY, "--topology", "v5e:2x2", "--mesh", "data=4", "--json", str(out),
                   "--config.train.batch_size=262144"])
    payload = json.loads(out.read_text())
    assert rc == 1 and payload["plans"] == [] and len(payload["does_not_fit"]) == 1
    assert "mesh data=4,fsdp=1,tensor=1 on v5e:2x2 does not fit: RESOURCE_EXHAUSTED" in payload["does_not_fit"][0]
    assert "exceeds available HBM" in capsys.readouterr().out


@pytest.mark.parametrize("mesh,fragment", [
    ("data=2,fsdp=x", "fsdp must be an integer"),
    ("model=2", "items must look like data=N"),
])
def test_mesh_option_errors_name_the_item(mesh, fragment):
    with pytest.raises(plan_lib.PlanError, match=fragment):
        plan_lib.parse_mesh(mesh)
