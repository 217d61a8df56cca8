"""The one geometry layer of the project: every stage measures hands through it.

Palm points (a fixed barycentric set on the four palm triangles), the canonical clip frame,
the hand-local frame, signed flexion, finger spacing, fingertip distances, fingertip-to-palm
and palm-to-palm distances, and bone lengths. The angles are measured the way HandX
measures them, so thresholds mean the same on real data:

- hand-local frame per frame: x along wrist -> middle MCP, z = x cross (wrist -> index
  MCP), y = z cross x;
- flexion of a non-thumb joint: the incoming and outgoing bones projected on the local x-z
  plane, the angle between them signed by the local y of their cross product, negated for
  the left hand. One sign convention everywhere: positive = bent towards the palm, on both
  hands (`chain_bend_angles`, the representation's rotation scalars, the annotation's
  flexion, the synthetic ground truth, the joint-limit metric);
- thumb: full 3-D angles, the MCP signed by the local z of the cross product (negative
  local z = flexing across the palm = positive), the IP unsigned; HandX does not report
  the CMC;
- angles under 11 degrees count as 0 (`DEAD_ZONE_RAD`) in the annotation's flexion.

Two deliberate differences from HandX's released code: the palm points are fixed (HandX
draws new random points on every call), and signed angles are kept so hyperextension is
measurable. Everything is numpy over leading batch axes; `local_frames` and
`chain_bend_angles` also run on JAX arrays.
"""

import numpy as np

from handx_jax.hand import skeleton

POINTS_PER_TRIANGLE = 25


def _barycentric_grid(n: int = POINTS_PER_TRIANGLE) -> np.ndarray:
    """Fixed barycentric weights (n, 3) spread over a triangle (reproducible, no RNG)."""
    # A triangular lattice with 7 rows holds 28 points; keep the 25 nearest the centroid
    # so the set is symmetric-ish and deterministic.
    rows = 7
    pts = []
    for i in range(rows):
        for j in range(rows - i):
            a = (i + 1 / 3) / (rows + 0.0)
            b = (j + 1 / 3) / (rows + 0.0)
            pts.append((1.0 - a - b, a, b))
    pts = np.asarray(pts, dtype=np.float64)
    pts = np.clip(pts, 0.0, None)
    pts /= pts.sum(axis=1, keepdims=True)
    centre = np.full(3, 1 / 3)
    order = np.argsort(np.linalg.norm(pts - centre, axis=1), kind="stable")
    return pts[np.sort(order[:n])]


PALM_BARYCENTRIC = _barycentric_grid()  # (25, 3)


def palm_points(joints: np.ndarray) -> np.ndarray:
    """Palm samples (..., 100, 3) from joints (..., 21, 3): 25 fixed points per palm triangle."""
    tri = np.asarray(skeleton.PALM_TRIANGLES)  # (4, 3)
    corners = joints[..., tri, :]  # (..., 4, 3, 3)
    pts = np.einsum("pk,...tkc->...tpc", PALM_BARYCENTRIC.astype(joints.dtype), corners)
    return pts.reshape(*joints.shape[:-2], tri.shape[0] * PALM_BARYCENTRIC.shape[0], 3)


def canonical_transform(motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (..., 3, 3) and origin (..., 3) of the HandX canonical frame from frame 0.

    motion: (..., T, 2, 21, 3), any leading batch axes. +x from left wrist to right wrist
    (made level), +z up (world z kept), +y = z cross x (towards the fingertips for hands
    facing forward); the origin is the wrists' midpoint. Rows of the rotation are the axes.
    """
    left, right = motion[..., 0, skeleton.LEFT, 0, :], motion[..., 0, skeleton.RIGHT, 0, :]
    x = np.array(right - left, dtype=np.float64)
    x[..., 2] = 0.0  # keep the frame level
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    x = np.where(norm < 1e-8, np.array([1.0, 0.0, 0.0]), x / np.maximum(norm, 1e-12))
    z = np.broadcast_to(np.array([0.0, 0.0, 1.0]), x.shape)
    rot = np.stack([x, np.cross(z, x), z], axis=-2)
    return rot, 0.5 * (left + right)


def canonicalize(motion: np.ndarray) -> np.ndarray:
    """Express clips (..., T, 2, 21, 3) in the canonical frame of their first frame."""
    rot, origin = canonical_transform(motion)
    lead = rot.shape[:-2]
    pts = (motion - origin[..., None, None, None, :]).reshape(*lead, -1, 3)
    return np.matmul(pts, np.swapaxes(rot, -1, -2)).reshape(motion.shape).astype(motion.dtype)


# ------------------------------------------------------------------------ constants --

DEAD_ZONE_RAD = np.deg2rad(11.0)  # flexion below this counts as 0 (HandX)
PALM_NEAREST = 5  # fingertip-to-palm feature: mean distance to this many nearest points
PALM_PALM_POINTS = 30  # palm-palm: mean of the 30 smallest nearest-neighbour distances

FINGERS = skeleton.FINGERS  # thumb, index, middle, ring, pinky
# Names of the three interior joints of every chain (thumb: CMC, MCP, IP).
FLEX_JOINT_NAMES = (("cmc", "mcp", "ip"),) + (("mcp", "pip", "dip"),) * 4
SPACING_PAIRS = (("index", "middle"), ("middle", "ring"), ("ring", "pinky"))
INTRA_TIPS = ("index", "middle", "ring", "pinky")  # compared with the thumb tip

CHAIN_ARRAY = np.array([skeleton.CHAINS[f] for f in FINGERS])  # (5, 5) wrist..tip
TIPS = np.array(skeleton.FINGERTIPS)  # (5,) thumb..pinky
_MCP_PIP = np.array([(skeleton.MCP[f], skeleton.PIP[f]) for f in INTRA_TIPS])  # (4, 2)
# +1 where a hand's planar bend angle is already flexion-positive: the local frame mirrors
# with the hand, so the left hand's raw sign is the opposite of the right's.
HAND_SIGN = np.array([-1.0, 1.0], dtype=np.float32)


def _chain_neighbours() -> tuple[np.ndarray, np.ndarray]:
    """Per joint the previous and next joint along its chain (itself at wrist and tips)."""
    prev = np.arange(skeleton.NUM_JOINTS)
    nxt = np.arange(skeleton.NUM_JOINTS)
    for chain in skeleton.CHAINS.values():
        for a, j, b in zip(chain[:-2], chain[1:-1], chain[2:]):
            prev[j], nxt[j] = a, b
    return prev, nxt


PREV_JOINT, NEXT_JOINT = _chain_neighbours()
INTERIOR_MASK = (PREV_JOINT != NEXT_JOINT).astype(np.float32)  # (21,), 15 ones per hand


def array_module(x):
    """numpy or jax.numpy, matching the array type of `x`."""
    if type(x).__module__.startswith(("jax", "jaxlib")):
        import jax.numpy as jnp
        return jnp
    return np


def dot3(a, b):
    """Dot product over a trailing xyz axis, as three products (numpy's tiny-axis sum is slow)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def unit(v, xp=np):
    """v / |v| over the last axis (a zero vector stays finite)."""
    return v / xp.sqrt(xp.maximum(dot3(v, v), 1e-24))[..., None]


def local_frames(joints):
    """Hand-local rotation (..., 3, 3) of joints (..., 21, 3); rows = local x, y, z axes.

    x along wrist -> middle MCP; z = x cross (wrist -> index MCP), normalised; y = z cross x.
    """
    xp = array_module(joints)
    wrist = joints[..., 0, :]
    x = unit(joints[..., skeleton.MCP["middle"], :] - wrist, xp)
    z = unit(xp.cross(x, joints[..., skeleton.MCP["index"], :] - wrist), xp)
    return xp.stack([x, xp.cross(z, x), z], axis=-2)


def bend_angles(motion):
    """Planar signed bend angle per joint slot (..., 2, 21), flexion positive on both hands.

    At every interior chain joint: the incoming and outgoing bones in the hand-local x-z
    plane (local y dropped), the angle from one to the other signed by the local y of
    their cross product, negated for the left hand; 0 at the wrist and the tips. No dead
    zone. numpy or JAX in, same out.
    """
    xp = array_module(motion)
    rot = local_frames(motion)  # (..., 2, 3, 3)
    xx, xy, xz = (rot[..., 0, k][..., None] for k in range(3))  # local x, (..., 2, 1) each
    zx, zy, zz = (rot[..., 2, k][..., None] for k in range(3))  # local z
    # Coordinate-first layout: the steps below work on contiguous (..., 2, 21) planes.
    px, py, pz = xp.moveaxis(motion, -1, 0)
    if xp is np:
        px, py, pz = (np.ascontiguousarray(c) for c in (px, py, pz))
    inc = [c - c[..., PREV_JOINT] for c in (px, py, pz)]
    out = [c[..., NEXT_JOINT] - c for c in (px, py, pz)]
    ax = inc[0] * xx + inc[1] * xy + inc[2] * xz
    az = inc[0] * zx + inc[1] * zy + inc[2] * zz
    bx = out[0] * xx + out[1] * xy + out[2] * xz
    bz = out[0] * zx + out[1] * zy + out[2] * zz
    # local y of (a x b) for a, b in the x-z plane is a_z b_x - a_x b_z
    angle = xp.arctan2(az * bx - ax * bz, ax * bx + az * bz)
    sign = xp.asarray(HAND_SIGN, dtype=angle.dtype)[:, None]
    return angle * sign * xp.asarray(INTERIOR_MASK, dtype=angle.dtype)


def angle_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unsigned angle (...,) between vectors (..., 3), from atan2(|u x v|, u . v)."""
    cross = np.cross(u, v)
    return np.arctan2(np.sqrt(dot3(cross, cross)), dot3(u, v))


def flexion_angles(motion: np.ndarray, dead_zone: bool = True) -> np.ndarray:
    """HandX flexion (..., 2, 5, 3) in radians of motion (..., 2, 21, 3), float32.

    Fingers thumb..pinky, joints along the chain (thumb CMC, MCP, IP; others MCP, PIP,
    DIP). Non-thumb joints: `bend_angles`. Thumb: full 3-D angles; the MCP signed by the
    local z of the cross product (negative local z = positive), CMC and IP unsigned.
    `dead_zone`: angles under 11 degrees become 0.
    """
    motion = np.asarray(motion)
    out = np.array(bend_angles(motion)[..., CHAIN_ARRAY[:, 1:4]])  # (..., 2, 5, 3)
    thumb = motion[..., CHAIN_ARRAY[0], :]  # (..., 2, 5, 3)
    bones = thumb[..., 1:, :] - thumb[..., :-1, :]
    a, b = bones[..., :-1, :], bones[..., 1:, :]  # (..., 2, 3, 3)
    cross = np.cross(a, b)
    angle = np.arctan2(np.sqrt(dot3(cross, cross)), dot3(a, b))
    z = local_frames(motion)[..., 2, :]  # (..., 2, 3)
    angle[..., 1] *= np.where(dot3(cross[..., 1, :], z) < 0, 1.0, -1.0)
    out[..., 0, :] = angle
    if dead_zone:
        out[np.abs(out) < DEAD_ZONE_RAD] = 0.0
    return out.astype(np.float32, copy=False)


def spacing_angles(joints: np.ndarray) -> np.ndarray:
    """Angles (..., 3) between adjacent fingers' MCP->PIP vectors (index-middle, middle-ring,
    ring-pinky) of joints (..., 21, 3)."""
    vec = joints[..., _MCP_PIP[:, 1], :] - joints[..., _MCP_PIP[:, 0], :]  # (..., 4, 3)
    return angle_between(vec[..., :-1, :], vec[..., 1:, :])


def intra_tip_distances(joints: np.ndarray) -> np.ndarray:
    """Thumb tip to the index..pinky tips of the same hand (..., 4) from joints (..., 21, 3)."""
    tips = joints[..., TIPS, :]
    diff = tips[..., 1:, :] - tips[..., :1, :]
    return np.sqrt(dot3(diff, diff))


def inter_tip_distances(motion: np.ndarray) -> np.ndarray:
    """Left tip i to right tip j (..., 5, 5) from motion (..., 2, 21, 3)."""
    tips = motion[..., TIPS, :]
    diff = tips[..., 0, :, None, :] - tips[..., 1, None, :, :]
    return np.sqrt(dot3(diff, diff))


BONE_PARENTS = np.asarray([p for p, _ in skeleton.BONES])
BONE_CHILDREN = np.asarray([c for _, c in skeleton.BONES])


def bone_lengths(joints):
    """Lengths (..., 20) of the bones (`skeleton.BONES` order) of joints (..., 21, 3); numpy
    or JAX in, same out."""
    diff = joints[..., BONE_CHILDREN, :] - joints[..., BONE_PARENTS, :]
    return array_module(joints).sqrt(dot3(diff, diff))


# -------------------------------------------------------------- palm as a linear map --

def _palm_basis() -> tuple[np.ndarray, np.ndarray]:
    """Corner joints (6,) of the palm triangles and weights M (100, 6): points = M @ corners.

    The same points as `palm_points`, written as one linear map, so distances to the palm
    become small matrix products instead of materialised point clouds.
    """
    tri = np.asarray(skeleton.PALM_TRIANGLES)
    corners = np.unique(tri)
    per = PALM_BARYCENTRIC.shape[0]
    weights = np.zeros((len(tri) * per, len(corners)))
    for t, triangle in enumerate(tri):
        for k, joint in enumerate(triangle):
            weights[t * per:(t + 1) * per, np.searchsorted(corners, joint)] += \
                PALM_BARYCENTRIC[:, k]
    return corners, weights


PALM_CORNERS, PALM_WEIGHTS = _palm_basis()
_PALM_WW = np.einsum("pk,pl->pkl", PALM_WEIGHTS, PALM_WEIGHTS).reshape(
    PALM_WEIGHTS.shape[0], -1)  # (100, 36): |palm point|^2 from the corners' Gram matrix
PALM_MEAN_WEIGHTS = PALM_WEIGHTS.mean(axis=0)  # (6,): the palm centre from its corners


def palm_centres(joints: np.ndarray) -> np.ndarray:
    """Mean palm point (..., 3) of joints (..., 21, 3)."""
    return np.einsum("k,...kc->...c", PALM_MEAN_WEIGHTS.astype(joints.dtype),
                     joints[..., PALM_CORNERS, :])


def tip_palm_distance(tips: np.ndarray, corners: np.ndarray,
                      nearest: int = PALM_NEAREST) -> np.ndarray:
    """Mean distance (..., K) from tips (..., K, 3) to their `nearest` palm points.

    corners (..., 6, 3) are a palm's triangle corners (`PALM_CORNERS`); `nearest=1` is the
    distance to the closest palm point. With points p = M c relative to the first corner,
    |t - p|^2 = |t|^2 - 2 M (c t) + M G M^T (G = c c^T): two matrix products per tip set.
    Computes in the inputs' float precision.
    """
    dtype = np.result_type(tips.dtype, corners.dtype, np.float32)
    lead = tips.shape[:-2]
    origin = corners[..., :1, :]
    c = (corners - origin).reshape(-1, corners.shape[-2], 3).astype(dtype, copy=False)
    t = (tips - origin).reshape(-1, tips.shape[-2], 3).astype(dtype, copy=False)
    gram = np.matmul(c, c.transpose(0, 2, 1)).reshape(c.shape[0], -1)  # (B, 36)
    sq_palm = gram @ _PALM_WW.T.astype(dtype)  # (B, 100)
    ct = np.matmul(t, c.transpose(0, 2, 1))  # (B, K, 6)
    d2 = (ct.reshape(-1, c.shape[1]) @ PALM_WEIGHTS.T.astype(dtype)).reshape(
        t.shape[0], t.shape[1], -1)
    d2 *= -2.0
    d2 += sq_palm[:, None, :]
    d2 += np.sum(t * t, axis=-1)[..., None]
    if nearest == 1:
        return np.sqrt(np.maximum(d2.min(axis=-1), 0.0)).reshape(*lead, tips.shape[-2])
    d2.partition(nearest - 1, axis=-1)
    out = np.sqrt(np.maximum(d2[..., :nearest], 0.0)).mean(axis=-1)
    return out.reshape(*lead, tips.shape[-2])


def tip_to_other_palm(motion: np.ndarray, nearest: int = PALM_NEAREST) -> np.ndarray:
    """Each fingertip of hand h to the palm of hand 1 - h, (..., 2, 5), from (..., 2, 21, 3).

    `nearest` = 5: HandX's annotation feature (mean of the 5 nearest palm points);
    `nearest` = 1: HandX's evaluation (the closest palm point).
    """
    tips = motion[..., TIPS, :]
    other = motion[..., ::-1, :, :][..., PALM_CORNERS, :]
    return tip_palm_distance(tips, other, nearest)


_PALM_CHUNK = 32  # frames per distance-matrix chunk: 1.3 MB of float32, stays in cache


def palm_palm_distance(left: np.ndarray, right: np.ndarray,
                       points: int = PALM_PALM_POINTS, dtype=np.float32) -> np.ndarray:
    """HandX's palm-palm distance (...,) from palm corners left, right (..., 6, 3).

    For every left palm point the distance to the nearest right palm point; the mean of the
    `points` smallest of those. The 100 x 100 squared distances per frame are
    |l|^2 + |r|^2 - 2 l.r with l.r = (l c^T) M^T (c the right corners), laid out right point
    by left point so the nearest-neighbour minimum runs over whole rows. Coordinates are
    taken from the midpoint between the palms, which keeps the float32 expansion's error
    below 0.05 mm. Small per-frame matrix products: BLAS never starts threads here.
    """
    lead = left.shape[:-2]
    lc = left.reshape(-1, left.shape[-2], 3).astype(np.float64)
    rc = right.reshape(-1, right.shape[-2], 3).astype(np.float64)
    origin = 0.5 * (np.einsum("k,fkc->fc", PALM_MEAN_WEIGHTS, lc + rc))[:, None, :]
    lc, rc = (lc - origin).astype(dtype), (rc - origin).astype(dtype)
    weights = PALM_WEIGHTS.astype(dtype)
    minus2w = (-2.0 * PALM_WEIGHTS).astype(dtype)  # (100, 6)
    out = np.empty(lc.shape[0], dtype=np.float32)
    for lo in range(0, lc.shape[0], _PALM_CHUNK):
        lcc, rcc = lc[lo:lo + _PALM_CHUNK], rc[lo:lo + _PALM_CHUNK]
        lpts = np.matmul(weights, lcc)  # (F, 100, 3)
        rpts = np.matmul(weights, rcc)
        sq_r = np.einsum("fpc,fpc->fp", rpts, rpts)
        sq_l = np.einsum("fpc,fpc->fp", lpts, lpts)
        lr = np.matmul(lpts, rcc.transpose(0, 2, 1))  # (F, 100, 6): left points . corners
        d2 = np.matmul(minus2w, lr.transpose(0, 2, 1))  # (F, 100 right, 100 left)
        d2 += sq_r[:, :, None]
        nn = d2.min(axis=1)
        nn += sq_l
        nn = np.partition(nn, points - 1, axis=-1)[:, :points]
        out[lo:lo + _PALM_CHUNK] = np.sqrt(np.maximum(nn, 0.0)).mean(axis=-1)
    return out.reshape(lead)
