"""Joint orders and kinematic trees, in one place (DESIGN.md §0).

Three orders meet in this toolkit:
- MANO's 16 articulated joints (pose layout: 16 x axis-angle), wrist first;
- InterHand2.6M's 21 joints per hand: for thumb, index, middle, ring, pinky the joints from
  tip to base, then the wrist (index 20). Right hand is 0-20 and left hand 21-41 in the release;
- IntagHand's internal order (wrist first, each finger base to tip), used only for reference.
Everything in lagchand-edge stores per-hand joints in the InterHand2.6M order.
"""

from __future__ import annotations

#: Hand index used on every (2, ...) array: 0 = left, 1 = right (IntagHand's output order).
HAND_NAMES: tuple[str, str] = ("left", "right")
FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")

#: MANO's articulated joints, in pose-parameter order.
MANO_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
NUM_MANO_JOINTS = 16
NUM_JOINTS = 21

#: InterHand2.6M per-hand joint names (index = position in the 21-joint array).
INTERHAND_JOINT_NAMES: tuple[str, ...] = tuple(
    f"{finger}{k}" for finger in FINGERS for k in (4, 3, 2, 1)
) + ("wrist",)

#: Rows of the 21-joint array taken from MANO's 16 joints (0..15) or fingertips (16 + finger).
#: Fingertips 16..20 are thumb, index, middle, ring, pinky tip vertices.
MANO_TO_INTERHAND: tuple[int, ...] = (
    16, 15, 14, 13,  # thumb tip..thumb1
    17, 3, 2, 1,  # index
    18, 6, 5, 4,  # middle
    19, 12, 11, 10,  # ring
    20, 9, 8, 7,  # pinky
    0,  # wrist
)

#: MANO fingertip vertices in the InterHand2.6M regressor (thumb, index, middle, ring, pinky).
MANO_FINGERTIP_VERTICES: tuple[int, ...] = (745, 317, 445, 556, 673)

WRIST = INTERHAND_JOINT_NAMES.index("wrist")  # 20
MIDDLE_MCP = INTERHAND_JOINT_NAMES.index("middle1")  # 11: IntagHand's root joint (its index 9)

#: InterHand2.6M per-hand index -> IntagHand index order (wrist, then each finger base to tip).
INTERHAND_TO_INTAGHAND: tuple[int, ...] = (
    20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16,
)

#: Bones of the 21-joint skeleton as (parent, child) pairs in InterHand2.6M order, for drawing.
SKELETON: tuple[tuple[int, int], ...] = tuple(
    pair
    for f in range(5)
    for pair in ((WRIST, 4 * f + 3), (4 * f + 3, 4 * f + 2), (4 * f + 2, 4 * f + 1), (4 * f + 1, 4 * f))
)

#: Slices of the release's 42-joint arrays for each hand of HAND_NAMES.
RELEASE_SLICES: dict[str, slice] = {"right": slice(0, 21), "left": slice(21, 42)}


def root_index(kind: str) -> int:
    """The per-hand joint a root-alignment uses: 'mcp' (IntagHand's protocol) or 'wrist'."""
    roots = {"mcp": MIDDLE_MCP, "wrist": WRIST}
    if kind not in roots:
        raise ValueError(f"unknown root {kind!r}; choose one of {sorted(roots)}")
    return roots[kind]
