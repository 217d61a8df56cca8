"""Hand skeleton constants: MANO joint order with fingertips appended."""

import numpy as np

NUM_JOINTS = 21
NUM_HANDS = 2
LEFT, RIGHT = 0, 1
FPS = 30
CLIP_FRAMES = 60

JOINT_NAMES = (
    "wrist",
    "index_mcp", "index_pip", "index_dip",
    "middle_mcp", "middle_pip", "middle_dip",
    "pinky_mcp", "pinky_pip", "pinky_dip",
    "ring_mcp", "ring_pip", "ring_dip",
    "thumb_cmc", "thumb_mcp", "thumb_ip",
    "thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip",
)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# Wrist-to-tip chains, wrist included.
CHAINS = {
    "thumb": (0, 13, 14, 15, 16),
    "index": (0, 1, 2, 3, 17),
    "middle": (0, 4, 5, 6, 18),
    "ring": (0, 10, 11, 12, 19),
    "pinky": (0, 7, 8, 9, 20),
}
FINGERTIPS = tuple(CHAINS[f][-1] for f in FINGERS)  # thumb, index, middle, ring, pinky
MCP = {f: CHAINS[f][1] for f in FINGERS}  # thumb: CMC
PIP = {f: CHAINS[f][2] for f in FINGERS}  # thumb: MCP


def _parents() -> np.ndarray:
    parents = np.full(NUM_JOINTS, -1, dtype=np.int32)
    for chain in CHAINS.values():
        for parent, child in zip(chain[:-1], chain[1:]):
            parents[child] = parent
    return parents


PARENTS = _parents()  # parent joint of each joint, -1 for the wrist
BONES = tuple((int(PARENTS[j]), j) for j in range(1, NUM_JOINTS))  # (parent, child), 20 bones

# Joints whose bend angle is a "rotation scalar" (interior chain joints), 15 per hand:
# for each finger the 3 interior joints of its chain, in FINGERS order.
INTERIOR_JOINTS = tuple(j for f in FINGERS for j in CHAINS[f][1:-1])

# Palm triangles (wrist, a, b) used for palm sampling.
PALM_TRIANGLES = ((0, 13, 1), (0, 1, 4), (0, 4, 10), (0, 10, 7))
