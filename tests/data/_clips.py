"""Small plausible clips for data-layer tests (metres, a rough rest hand plus motion)."""
import numpy as np

from handx_jax.hand import skeleton

# Rest left hand, hand-local = world: x towards the middle MCP, index on +y, palm normal +z.
_FINGER_BASE = {"thumb": (0.03, 0.035), "index": (0.085, 0.02), "middle": (0.09, 0.0),
                "ring": (0.085, -0.018), "pinky": (0.075, -0.035)}
_SEGMENTS = {"thumb": (0.035, 0.03, 0.025), "index": (0.04, 0.025, 0.02),
             "middle": (0.045, 0.028, 0.022), "ring": (0.042, 0.026, 0.02),
             "pinky": (0.032, 0.02, 0.018)}


def rest_hand() -> np.ndarray:
    """Joints (21, 3) of a flat left hand at the origin."""
    joints = np.zeros((skeleton.NUM_JOINTS, 3))
    for finger, chain in skeleton.CHAINS.items():
        base = np.array([*_FINGER_BASE[finger], 0.0])
        joints[chain[1]] = base
        direction = base / np.linalg.norm(base)
        for joint, length in zip(chain[2:], _SEGMENTS[finger]):
            joints[joint] = joints[skeleton.PARENTS[joint]] + length * direction
    return joints


def plausible_clips(n: int, seed: int = 0, lengths=(60,), k: int = 5) -> dict:
    """n clips: two rest hands 0.3 m apart with smooth random drift and jitter."""
    rng = np.random.default_rng(seed)
    hand = rest_hand()
    right = hand * np.array([-1.0, 1.0, 1.0])
    pose = np.stack([hand + [-0.15, 0.0, 0.0], right + [0.15, 0.0, 0.0]])  # (2, 21, 3)
    clips = {}
    for i in range(n):
        t = lengths[i % len(lengths)]
        drift = np.cumsum(rng.normal(scale=2e-3, size=(t, 2, 1, 3)), axis=0)
        jitter = rng.normal(scale=3e-3, size=(t, 2, 21, 3))
        clips[f"clip_{i:04d}"] = {
            "motion": (pose + drift + jitter).astype(np.float32),
            "left_annotation": [f"left {i} v{j}" for j in range(k)],
            "right_annotation": [f"right {i} v{j}" for j in range(k)],
            "interaction_annotation": [f"relation {i} v{j}" for j in range(k)],
        }
    return clips


def write_plain_handx(path, clips) -> None:
    """Write HandX format the way its users do: plain np.savez of dicts (no project code)."""
    np.savez(path, **clips)
