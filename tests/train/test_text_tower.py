"""The frozen text tower stage: training, the precomputed caption embeddings file, and the
refusal of stale tokenizers, towers and embeddings."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from handx_jax import cli, configlib
from handx_jax.text import tokenizer as tokenizer_lib
from handx_jax.train import text_tower


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
    from handx_jax.data import synthetic

    root = tmp_path_factory.mktemp("tower")
    data = str(root / "data")
    synthetic.write_dataset(data, 48, 16, seed=3)
    config = configlib.load_config("configs/text_tower.py:size=T,runlocal")
    config.train.steps = 10
    config.train.ckpt_every = 10
    workdir = str(root / "tower")
    text_tower.train_tower(config, workdir, data)
    path = text_tower.embed_dataset(workdir, data, batch_size=64, progress=False)
    return data, workdir, path


def _copy_dataset(src: str, dst: str) -> str:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tfds", "text_embeddings", "text_tower"))
    return dst


def test_embeddings_cover_every_caption_and_match_the_tower(tower):
    data, workdir, path = tower
    identity = text_tower.tower_identity(workdir, data)
    assert os.path.basename(path) == f"{identity.key}.npz"
    table = tokenizer_lib.load_text_embeddings(path)
    assert table.meta["key"] == identity.key and table.dim == 64
    wanted = text_tower.dataset_captions(data)
    assert all(sorted(table.rows[r]) == wanted[r] for r in tokenizer_lib.ROLES)
    assert len(wanted["left"]) > 10
    # Oracle: the sum of a triple's per-role rows is the tower's own (summed) text encoding.
    config, params, _ = text_tower.load_tower(workdir)
    from handx_jax.models import evaluator as evaluator_model
    from handx_jax.text.encoder import stack_tokens

    model = evaluator_model.model_from_config(config)
    triples = [(wanted["left"][i], wanted["right"][-1 - i], wanted["relation"][i % 3]) for i in range(5)]
    tokens = tokenizer_lib.encode_triples(tokenizer_lib.load_tokenizer(data), triples, int(config.model.text_max_len))
    tok, msk = stack_tokens({k: jnp.asarray(v) for k, v in tokens.items()})
    summed = model.apply({"params": params}, tok, msk, method=lambda m, t, k: m.text_encoder(t, k))
    from_file = np.stack([table.lookup(t) for t in triples]).sum(axis=1)
    np.testing.assert_allclose(from_file, np.asarray(summed), atol=1e-5)
    # Two captions of one role differ.
    assert np.abs(table.lookup(triples[0]) - table.lookup(triples[1])).max() > 1e-3


def test_new_captions_are_added_and_old_rows_kept(tower, tmp_path):
    from handx_jax.data import store

    data, workdir, path = tower
    copy = _copy_dataset(data, str(tmp_path / "data"))
    split = store.find_split(copy, "test")
    clips = store.load_any(split)
    name = sorted(clips)[0]
    clips[name]["left_annotation"] = list(clips[name]["left_annotation"]) + ["Left: a caption never seen before."]
    for k in ("right_annotation", "interaction_annotation"):
        clips[name][k] = list(clips[name][k]) + [clips[name][k][0]]
    for other in os.listdir(copy):  # keep one format of the test split, the edited one
        if other.startswith("test") and other != os.path.basename(split) and not other.startswith("test_ground"):
            os.remove(os.path.join(copy, other))
    store.save_clips(split, clips)
    new_path = text_tower.embed_dataset(workdir, copy, progress=False)
    old, new = tokenizer_lib.load_text_embeddings(path), tokenizer_lib.load_text_embeddings(new_path)
    assert "Left: a caption never seen before." in new.rows["left"]
    assert len(new.rows["left"]) == len(old.rows["left"]) + 1
    caption = next(iter(old.rows["right"]))
    np.testing.assert_array_equal(new.matrices["right"][new.rows["right"][caption]],
                                  old.matrices["right"][old.rows["right"][caption]])


def test_changed_tokenizer_is_refused(tower, tmp_path):
    data, workdir, _ = tower
    copy = _copy_dataset(data, str(tmp_path / "data"))
    tokenizer_lib.train_tokenizer(["a whole other set of captions", "with other pieces"], os.path.join(copy, "spm"), 40)
    with pytest.raises(text_tower.StaleTextEmbeddings, match="is not the one text tower .* was trained with"):
        text_tower.embed_dataset(workdir, copy, progress=False)
    # The tower itself refuses to resume on the other tokenizer.
    config = configlib.load_config("configs/text_tower.py:size=T,runlocal")
    with pytest.raises(text_tower.StaleTextEmbeddings, match="trained with another tokenizer"):
        text_tower.train_tower(config, workdir, copy)
    assert cli.main(["text", "embed", "--data", copy, "--tower", workdir]) == 1


def test_changed_tower_or_file_is_refused(tower, tmp_path):
    data, workdir, path = tower
    key = text_tower.tower_identity(workdir, data).key
    config = configlib.load_config("configs/diffusion.py:size=T")
    config.data.dir = data
    config.model.text_tower = workdir
    assert text_tower.prepare_run(config, train_missing=False).path == path
    assert config.model.text_key == key and config.model.text_embeddings_path == path
    embedder = text_tower.CaptionEmbedder(config)
    triple = ("Left: a caption never seen before.", next(iter(embedder.table.rows["right"])), "Relation: apart.")
    out = embedder([triple])
    assert out.shape == (1, 3, 64) and np.abs(out[0, 0]).max() > 0
    # A run trained on another tower's embeddings refuses this file ...
    config.model.text_key = "000000000000-111111111111"
    with pytest.raises(text_tower.StaleTextEmbeddings, match="made by tokenizer/tower .* not 000000000000"):
        text_tower.CaptionEmbedder(config)
    # ... and a file whose tower was retrained since refuses to embed new prompts.
    other = str(tmp_path / "tower")
    shutil.copytree(workdir, other)
    retrained = configlib.load_config("configs/text_tower.py:size=T,runlocal")
    retrained.train.steps = 20
    text_tower.train_tower(retrained, other, data)
    config.model.text_key = key
    config.model.text_tower = other
    with pytest.raises(text_tower.StaleTextEmbeddings, match="is now .* not " + key):
        text_tower.CaptionEmbedder(config)([triple])
    # Without a trained tower, a run does not start.
    config.model.text_tower = str(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="no trained text tower"):
        text_tower.prepare_run(config, train_missing=False)


def test_resume_refuses_another_text_key(tower, tmp_path):
    from handx_jax.train import loop

    _, workdir, _ = tower
    run = str(tmp_path / "run")
    shutil.copytree(workdir, run)  # a run directory with real checkpoints
    with open(os.path.join(run, "config.json")) as f:
        stored = json.load(f)
    stored["model"]["text_key"] = "aaa-bbb"
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(stored, f)
    config = configlib.load_config("configs/diffusion.py:size=T")
    config.model.text_key = "aaa-ccc"
    with pytest.raises(ValueError, match="text_key='aaa-bbb'; resuming it with 'aaa-ccc'"):
        loop.check_resume_identity(run, config)
    config.model.text_key = "aaa-bbb"
    loop.check_resume_identity(run, config)  # the same inputs resume


@pytest.mark.parametrize("size", ["T", "XS", "S"])
def test_every_tower_size_parses_and_builds(size):
    import jax

    from handx_jax.train import loop
    from handx_jax.train.state import count_params

    config = configlib.load_config(f"configs/text_tower.py:size={size}")
    assert config.family == "text_tower" and config.train.seed != configlib.load_config("configs/evaluator.py").train.seed
    task = loop.load_task(config)
    shapes = jax.eval_shape(lambda: task.init_params(jax.random.key(0)))
    cls = shapes["text_encoder"]["cls"]
    assert cls.value.shape == (3, text_tower_config_dim(size))
    assert count_params(shapes) > count_params(shapes["text_encoder"]) > 0
    # Generators conditioned on this tower expect its width.
    if size != "S":
        diffusion = configlib.load_config(f"configs/diffusion.py:size={'T' if size == 'T' else 'XS'}")
        assert diffusion.model.text_embed_dim == text_tower_config_dim(size)


def text_tower_config_dim(size):
    return configlib.load_module("configs/text_tower.py").embed_dim(size)
