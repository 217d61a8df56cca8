"""SentencePiece tokenizer: training, round trip, the grain transform, precomputed embeddings."""

import pickle

import numpy as np
import pytest

from handx_jax.text import tokenizer as tok

CAPTIONS = [
    "Left: Thumb extended, other fingers bent; thumb contacts all four fingertips.",
    "Right: Fingers bend and straighten; thumb contacts ring, index, and middle tips.",
    "Relation: Hands stay far apart; right hand positioned to the right and above.",
    "Left: Index finger bends slowly mid-sequence.",
    "Right: Wrist moves up quickly towards the end.",
    "Relation: Palms approach and touch initially.",
] * 4


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("spm")
    return tok.train_tokenizer(CAPTIONS, str(out / "spm"), vocab_size=120)


def test_round_trip_and_special_ids(model_path):
    sp = tok.load_tokenizer(model_path)
    assert sp.pad_id() == tok.PAD_ID and sp.unk_id() == tok.UNK_ID
    assert 10 < sp.get_piece_size() <= 120
    for caption in CAPTIONS[:6]:
        ids = sp.encode(caption)
        assert tok.PAD_ID not in ids
        assert sp.decode(ids) == caption


def test_transform_gives_fixed_length_ids_and_drops_strings(model_path):
    max_len = 12
    transform = tok.TokenizeCaptions(model_path, max_len=max_len)
    transform = pickle.loads(pickle.dumps(transform))  # grain workers receive a pickled copy
    element = {"motion": np.zeros((60, 168), np.float32), "caption_left": CAPTIONS[0],
               "caption_right": CAPTIONS[1], "caption_relation": "Palms touch."}
    out = transform.map(element)
    assert not any(k.startswith("caption_") for k in out)
    for role in tok.ROLES:
        ids, mask = out[f"tokens_{role}"], out[f"tokens_{role}_mask"]
        assert ids.shape == (max_len,) and ids.dtype == np.int32 and mask.dtype == np.float32
        np.testing.assert_array_equal(mask, (ids != 0).astype(np.float32))
    sp = tok.load_tokenizer(model_path)
    long_ids, short_ids = sp.encode(CAPTIONS[0]), sp.encode("Palms touch.")
    assert len(long_ids) > max_len > len(short_ids)
    np.testing.assert_array_equal(out["tokens_left"], long_ids[:max_len])  # truncated
    assert out["tokens_relation_mask"].sum() == len(short_ids)  # padded
    short = out["tokens_relation"][out["tokens_relation_mask"] > 0]
    assert sp.decode(short.tolist()) == "Palms touch."
    with pytest.raises(KeyError, match="caption_left"):
        transform.map({"caption_right": "a", "caption_relation": "b"})


def test_ensure_tokenizer_trains_from_train_split(tmp_path):
    from handx_jax.data import store

    clips = {f"clip{i}": {"motion": np.zeros((60, 2, 21, 3), np.float32),
                          "left_annotation": [CAPTIONS[i % 6]], "right_annotation": [CAPTIONS[(i + 1) % 6]],
                          "interaction_annotation": [CAPTIONS[(i + 2) % 6]]} for i in range(12)}
    store.save_clips(str(tmp_path / "train.clips.npz"), clips)
    path = tok.ensure_tokenizer(str(tmp_path), vocab_size=100)
    assert path == str(tmp_path / "spm.model") and (tmp_path / "spm.vocab").is_file()
    sp = tok.load_tokenizer(str(tmp_path))
    assert sp.decode(sp.encode(CAPTIONS[2])) == CAPTIONS[2]


def test_precomputed_embeddings_both_layouts(tmp_path):
    by_caption = tmp_path / "emb.npz"
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.savez(by_caption, captions=np.array(["a", "b", "c"]), embeddings=emb)
    out = tok.LookupTextEmbeddings(str(by_caption)).map(
        {"caption_left": "c", "caption_right": "a", "caption_relation": "b", "clip_index": 0})
    np.testing.assert_array_equal(out["text_embedding"], emb[[2, 0, 1]])
    with pytest.raises(KeyError, match="no left embedding for caption 'zzz'"):
        tok.LookupTextEmbeddings(str(by_caption)).map({"caption_left": "zzz", "caption_right": "a", "caption_relation": "b"})
    by_clip = tmp_path / "clip.npz"
    np.savez(by_clip, left=emb, right=emb + 100, relation=emb + 200)
    table = tok.load_text_embeddings(str(by_clip))
    np.testing.assert_array_equal(table.lookup(["x", "y", "z"], 1), np.stack([emb[1], emb[1] + 100, emb[1] + 200]))
    bad = tmp_path / "bad.npz"
    np.savez(bad, foo=emb)
    with pytest.raises(ValueError, match="captions\\+embeddings or left\\+right\\+relation"):
        tok.load_text_embeddings(str(bad))


def test_tokenizer_command(tmp_path, capsys):
    from handx_jax import cli
    from handx_jax.data import store

    clips = {f"c{i}": {"motion": np.zeros((60, 2, 21, 3), np.float32), "left_annotation": [CAPTIONS[i % 6]],
                       "right_annotation": [CAPTIONS[(i + 1) % 6]], "interaction_annotation": [CAPTIONS[(i + 2) % 6]]}
             for i in range(6)}
    store.save_clips(str(tmp_path / "train.clips.npz"), clips)
    assert cli.main(["text", "tokenizer", "--src", str(tmp_path), "--vocab-size", "90"]) == 0
    assert (tmp_path / "spm.model").is_file()
    assert "18 captions of 6 clips" in capsys.readouterr().out
    assert tok.load_tokenizer(str(tmp_path)).get_piece_size() <= 90
    assert cli.main(["text", "tokenizer", "--src", str(tmp_path / "missing")]) == 2


def test_per_role_embeddings_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    captions = {"left": ["Left: ünïcode fist.", "a", ""], "right": ["b"], "relation": ["c", "d"]}
    per_role = {r: (c, rng.normal(size=(len(c), 4)).astype(np.float32)) for r, c in captions.items()}
    path = tok.save_text_embeddings(str(tmp_path / "e.npz"), per_role, {"key": "k1"})
    table = tok.load_text_embeddings(path)
    assert table.meta == {"key": "k1"} and table.dim == 4
    for role, (caps, emb) in per_role.items():
        assert list(table.rows[role]) == caps
        np.testing.assert_array_equal(table.matrices[role], emb)
    out = table.lookup(("Left: ünïcode fist.", "b", "d"))
    np.testing.assert_array_equal(out, np.stack([per_role["left"][1][0], per_role["right"][1][0], per_role["relation"][1][1]]))
    assert table.missing([("a", "zzz", "c")]) == [("right", "zzz")]
    with np.load(path, allow_pickle=False) as data:
        assert data["captions_left_utf8"].dtype == np.uint8  # compact bytes, no fixed-width strings
