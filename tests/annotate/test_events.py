"""Event segmentation rules: run lengths, minimum lengths, sign consistency, schema."""

import json

import numpy as np

from handx_jax.annotate import events as E
from handx_jax.annotate import features as F
from tests.annotate import handmade as H


def test_runs_match_a_naive_encoding():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(7, 25))
    got = E.runs(codes)
    for row, row_runs in zip(codes, got):
        naive, start = [], 0
        for t in range(1, len(row) + 1):
            if t == len(row) or row[t] != row[start]:
                naive.append((int(row[start]), start, t))
                start = t
        assert row_runs == naive


def test_sign_consistency_rule_merges_only_up_to_80_percent():
    base = np.linspace(0.0, 1.0, 21)  # 20 rising velocities
    one_dip = base.copy()
    one_dip[10:] -= 0.1  # one falling velocity of 20: 95 % rising -> one stretch
    assert E.moving_segments(one_dip[None], eps=0.01, min_len=6)[0] == [(1, 0, 21)]
    many = base.copy()
    for k in (5, 8, 11, 14, 17):  # five falling velocities of 20: 75 % -> split
        many[k:] -= 0.09
    segs = E.moving_segments(many[None], eps=0.01, min_len=3)[0]
    assert all(s[2] - s[1] < 21 for s in segs)


def test_minimum_event_length():
    values = np.zeros((2, 30))
    values[0, 10:15] = np.linspace(0, 1.2, 5)  # a 5-frame rise (too short)
    values[0, 15:] = 1.2
    values[1, 10:17] = np.linspace(0, 1.2, 7)  # a 7-frame rise
    values[1, 17:] = 1.2
    ev = E.graded_events(values, E.FLEX_EDGES, E.FLEX_LABELS, E.FLEX_SPEED, eps=0.02)
    assert not any("start_des" in e for e in ev[0])
    moving = [e for e in ev[1] if "start_des" in e]
    assert moving == [{"start": 10, "end": 17, "start_des": "Fully extended",
                       "end_des": "Fully bent", "v_des": "Fast"}]
    assert {"start": 17, "end": 30, "constant_des": "Fully bent"} in ev[1]


def test_contacts_close_short_gaps_and_drop_blips():
    mask = np.zeros((1, 40), bool)
    mask[0, 5:10] = True
    mask[0, 11:15] = True  # 1-frame gap: one contact 5..15
    mask[0, 22] = True  # a 1-frame blip: dropped
    mask[0, 33:38] = True  # 5 frames: shorter than the 6-frame minimum, dropped
    assert E.contact_intervals(mask) == [[(5, 15)]]
    mask[0, 38] = True  # 6 frames: kept
    assert E.contact_intervals(mask) == [[(5, 15), (33, 39)]]


def test_wrist_events_need_three_centimetres_and_give_direction():
    t = np.arange(60)
    pos = np.stack([np.interp(t, [0, 10, 30, 59], [0, 0, 0.1, 0.1]),  # +10 cm on x
                    np.interp(t, [0, 10, 30, 59], [0, 0, 0.02, 0.02]),  # 2 cm on y: no event
                    np.interp(t, [0, 40, 50, 59], [0, 0, -0.06, -0.06])])
    ev = E.wrist_events(np.concatenate([pos, pos]))
    assert [e["direction"] for e in ev[0]] == ["left-to-right"]
    # the ramp spans frames 10..30; the 5-frame moving average the direction is read from
    # rises from frame 8 to 32, hence [8, 33); speed 10 cm over the 20 ramp frames: Fast
    assert (ev[0][0]["start"], ev[0][0]["end"], ev[0][0]["v_des"]) == (8, 33, "Fast")
    assert ev[1] == []
    assert ev[2][0]["direction"] == "up-to-down" and ev[2][0]["v_des"] == "Fast"


def test_clip_json_schema_and_known_events():
    frames = 60
    flex = np.full((frames, 2, 5, 3), 0.2)
    flex[:, 1, 1, :] = np.interp(np.arange(frames), [0, 10, 30, 59], [0.1, 0.1, 1.4, 1.4])[:, None]
    flex[20:35, 0, 2, 0] = -0.5
    wrist = np.zeros((frames, 2, 3))
    wrist[:, 0, 0], wrist[:, 1, 0] = -0.15, 0.15
    motion = H.clip(flex, wrist)
    motion[20:30, 1, 16] = motion[20:30, 1, 18] + np.float32(0.004)
    doc = E.clip_events(F.extract_features(motion), 0)
    E.validate_event_json(doc)
    json.dumps(doc)  # plain JSON types only
    assert set(doc) == {"frame_count", "left_hand_events", "right_hand_events",
                        "two_hand_relationships"}
    assert set(doc["left_hand_events"]) == {"finger_flexing", "finger_spacing",
                                            "finger_tip_contact", "wrist_trajectory"}
    assert set(doc["two_hand_relationships"]) == {
        "finger_tip_contact", "finger_palm_distance", "palm_palm_distance",
        "palm_palm_relative_position"}
    right = doc["right_hand_events"]
    assert right["finger_tip_contact"] == {
        "middle_tip, thumb_tip": [{"start": 20, "end": 30, "constant_des": "Contact"}]}
    bend = [e for e in right["finger_flexing"]["index_pip"] if "start_des" in e]
    assert bend and bend[0]["end_des"] == "Fully bent"
    hyper = doc["left_hand_events"]["finger_flexing"]["middle_mcp"]
    assert {"start": 20, "end": 35, "constant_des": "Hyperextended"} in hyper
    assert "thumb_cmc" not in doc["left_hand_events"]["finger_flexing"]
    lr = doc["two_hand_relationships"]["palm_palm_relative_position"]["left-right"]
    assert lr == [{"start": 0, "end": 60,
                   "constant_des": "right hand is to the RIGHT of the left hand."}]


def test_palm_contact_replaces_proximity_frames():
    motion, _, _ = H.still_clip(frames=60, separation=0.2)
    centre = motion[20:35, 0][:, [0, 1, 4, 10, 7]].mean(axis=1)
    motion[20:35, 1, 17] = centre + np.float32(0.003)  # right index tip on the left palm
    doc = E.clip_events(F.extract_features(motion), 0)
    evs = doc["two_hand_relationships"]["finger_palm_distance"]["right_index_tip, left_palm"]
    contact = [e for e in evs if e.get("constant_des") == "Contact"]
    assert contact == [{"start": 20, "end": 35, "constant_des": "Contact"}]
    for e in evs:
        if e is not contact[0]:
            assert e["end"] <= 20 or e["start"] >= 35


def test_wrist_direction_survives_tracking_jitter():
    rng = np.random.default_rng(7)
    t = np.arange(60)
    clean = np.interp(t, [0, 15, 35, 59], [0, 0, -0.12, -0.12])
    noisy = clean + rng.normal(0, 0.004, size=60)  # 4 mm jitter per frame
    ev = E.wrist_events(np.stack([noisy, np.zeros(60), rng.normal(0, 0.004, size=60)]))
    assert [e["direction"] for e in ev[0]] == ["right-to-left"]
    assert ev[0][0]["start"] <= 15 and ev[0][0]["end"] >= 36  # covers the true move
    assert ev[1] == [] and ev[2] == []


def test_smooth_is_a_centred_moving_average():
    x = np.arange(10.0)[None] ** 2
    got = E.smooth(x, 5)
    assert got.shape == x.shape
    np.testing.assert_allclose(got[0, 2:8], [np.mean(x[0, k - 2:k + 3]) for k in range(2, 8)])
    np.testing.assert_allclose(got[0, 0], np.mean([0, 0, 0, 1, 4]))
