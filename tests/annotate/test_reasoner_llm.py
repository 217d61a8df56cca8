"""The LLM backend against a real misbehaving chat-completions server on 127.0.0.1."""

import json
import os

import numpy as np
import pytest

from handx_jax.annotate import pipeline
from handx_jax.annotate import reasoner_llm as L
from handx_jax.data import store
from tests.annotate import handmade as H
from tests.annotate.fake_llm import FakeLLM


def _config(url, **kw):
    # the timeout leaves a loaded test machine room; "slow" answers take longer still
    base = dict(url=url, model="test-model", timeout=2.0, max_retries=6, backoff=0.01,
                max_backoff=0.05, max_format_retries=2)
    base.update(kw)
    return L.LLMConfig(**base)


EVENTS = {"frame_count": 60, "left_hand_events": {}, "right_hand_events": {},
          "two_hand_relationships": {}}


def test_parse_captions_is_strict():
    good = json.dumps([{"left": "a", "right": "b", "two_hands_relation": "c"}] * 5)
    assert len(L.parse_captions(good)) == 5
    assert len(L.parse_captions("```json\n" + good + "\n```")) == 5
    bad = [good[:-1], json.dumps([{"left": "a", "right": "b", "two_hands_relation": "c"}] * 4),
           json.dumps([{"left": "a", "right": "b"}] * 5),
           json.dumps([{"left": "a", "right": " ", "two_hands_relation": "c"}] * 5),
           json.dumps([{"left": "a", "right": "b", "two_hands_relation": "c", "x": "d"}] * 5),
           json.dumps({"left": "a"}), "Here: " + good]
    for text in bad:
        with pytest.raises(L.CaptionFormatError):
            L.parse_captions(text)


def test_recovers_from_slow_429_500_truncated_malformed_and_wrong_count(tmp_path):
    script = ["slow", "429", "500", "truncated", "malformed", "wrong_count"]
    with FakeLLM(script, slow_seconds=3.0) as server:
        reasoner = L.LLMReasoner(_config(server.url), cache_dir=str(tmp_path / "cache"))
        triplets = reasoner.describe(EVENTS)
        assert len(triplets) == 5 and triplets[0]["left"].startswith("left ")
        assert server.requests == len(script) + 1
        # the re-asks carry the validation error back to the model
        reask = server.bodies[-1]["messages"]
        assert len(reask) == 5 and "exactly 5 objects, got 4" in reask[-1]["content"]
        assert "not valid JSON" in reask[2]["content"]
        # a second reasoner on the same cache asks nothing
        again = L.LLMReasoner(_config(server.url), cache_dir=str(tmp_path / "cache"))
        assert again.describe(EVENTS) == triplets
        assert server.requests == len(script) + 1 and again.cache_hits == 1


def test_gives_up_after_retry_limits(tmp_path):
    with FakeLLM(["500"] * 50) as server:
        reasoner = L.LLMReasoner(_config(server.url, max_retries=2))
        with pytest.raises(L.LLMError, match="gave up after 3 attempts"):
            reasoner.describe(EVENTS)
        assert server.requests == 3
    with FakeLLM(["malformed"] * 50) as server:
        reasoner = L.LLMReasoner(_config(server.url, max_format_retries=1))
        with pytest.raises(L.LLMError, match="no valid answer after 2 tries"):
            reasoner.describe(EVENTS)
        assert server.requests == 2


def test_key_from_named_environment_variable(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setenv("HANDX_TEST_KEY", "sekrit")
    with FakeLLM() as server:
        client = L.ChatClient(_config(server.url, key_env="HANDX_TEST_KEY"))
        assert client.api_key == "sekrit"
        client.chat([{"role": "user", "content": "hi"}])
        seen.append(server.requests)
    assert seen == [1]


def test_cache_key_depends_on_events_template_and_model():
    a = L.cache_key(EVENTS, "t", "m")
    assert a == L.cache_key(json.loads(json.dumps(EVENTS)), "t", "m")
    assert len({a, L.cache_key(EVENTS, "t2", "m"), L.cache_key(EVENTS, "t", "m2"),
                L.cache_key(dict(EVENTS, frame_count=59), "t", "m")}) == 4


def _clip_file(tmp_path, count):
    rng = np.random.default_rng(0)
    clips = {f"clip{i:02d}": {"motion": H.random_clip(rng), "left_annotation": ["old"],
                              "right_annotation": ["old"], "interaction_annotation": ["old"]}
             for i in range(count)}
    path = str(tmp_path / "src.clips.npz")
    store.save_clips(path, clips)
    return path, clips


def test_interrupted_run_resumes_without_asking_again(tmp_path):
    src, clips = _clip_file(tmp_path, 8)
    out = str(tmp_path / "out.clips.npz")
    cache = str(tmp_path / "cache")
    with FakeLLM(fail_after=3) as server:  # the endpoint dies after answering 3 clips
        report = pipeline.annotate_file(src, out, backend="llm", cache=cache, concurrency=1,
                                        progress=False, llm_config=_config(server.url,
                                                                           max_retries=1))
        first_requests = server.requests
    assert report["annotated"] == 3 and len(report["failed"]) == 5
    assert not os.path.exists(out), "no output with missing captions"
    assert {f["clip"] for f in report["failed"]} <= set(clips)
    with FakeLLM() as server:
        report = pipeline.annotate_file(src, out, backend="llm", cache=cache, concurrency=3,
                                        progress=False, llm_config=_config(server.url))
        assert server.requests == 5, "only the 5 unanswered clips are asked"
    assert report["failed"] == [] and report["cache_hits"] == 3 and report["annotated"] == 8
    written = store.load_clips(out)
    assert list(written) == list(clips)
    for clip in written.values():
        assert len(clip["left_annotation"]) == 5 and clip["left_annotation"][0] != "old"
        assert clip["interaction_annotation"][0].startswith("relation ")
        assert len(clip["right_annotation"]) == 5
    assert first_requests >= 3 + 5


def test_permanent_failures_listed_and_partial_output_only_on_request(tmp_path):
    src, clips = _clip_file(tmp_path, 6)
    out = str(tmp_path / "part.clips.npz")
    fail = lambda prompt: '"frame_count": 60' in prompt and prompt.count("Contact") % 2 == 1
    with FakeLLM(fail_always=fail) as server:
        report = pipeline.annotate_file(src, out, backend="llm", concurrency=4,
                                        cache=str(tmp_path / "c"), allow_partial=True,
                                        progress=False, llm_config=_config(server.url,
                                                                           max_retries=1))
    failed = {f["clip"] for f in report["failed"]}
    assert failed and len(failed) < 6, "the predicate must split the clips"
    written = store.load_clips(out)
    assert set(written) == set(clips) - failed
    assert all(len(c["left_annotation"]) == 5 for c in written.values())


def test_concurrency_is_bounded(tmp_path):
    src, clips = _clip_file(tmp_path, 8)
    with FakeLLM(delay=0.15) as server:
        report = pipeline.annotate_file(src, str(tmp_path / "c.clips.npz"), backend="llm",
                                        concurrency=3, progress=False,
                                        llm_config=_config(server.url, timeout=5.0))
    assert report["annotated"] == 8 and server.requests == 8
    assert 2 <= server.max_in_flight <= 3
