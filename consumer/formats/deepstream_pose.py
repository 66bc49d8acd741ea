"""DeepStream ``nvmsgconv`` pose joint names: the wire keypoint ``id`` is a joint's index here.

Copied in order from ``_joint_maps`` in NVIDIA/DeepStream
``src/utils/nvmsgconv/deepstream_schema/eventmsg_payload.cpp`` (commit 0e05420b, the 2026 sources):
type 0 = pose2D (18 joints), type 1 = pose25D and type 2 = pose3D (the same 34 joints). Both the
full schema (``object.pose`` keyed by name) and the minimal schema (``name,x,y[,z],conf`` tokens)
write these names, so the index is the only stable joint id a Vision Event can carry.
"""

from __future__ import annotations

from typing import Final

POSE2D_JOINTS: Final = (
    "nose",
    "neck",
    "right-shoulder",
    "right-elbow",
    "right-hand",
    "left-shoulder",
    "left-elbow",
    "left-hand",
    "right-hip",
    "right-knee",
    "right-foot",
    "left-hip",
    "left-knee",
    "left-foot",
    "right-eye",
    "left-eye",
    "right-ear",
    "left-ear",
)
POSE25D_JOINTS: Final = (
    "pelvis",
    "left-hip",
    "right-hip",
    "torso",
    "left-knee",
    "right-knee",
    "neck",
    "left-ankle",
    "right-ankle",
    "left-big-toe",
    "right-big-toe",
    "left-small-toe",
    "right-small-toe",
    "left-heel",
    "right-heel",
    "nose",
    "left-eye",
    "right-eye",
    "left-ear",
    "right-ear",
    "left-shoulder",
    "right-shoulder",
    "left-elbow",
    "right-elbow",
    "left-wrist",
    "right-wrist",
    "left-pinky-knuckle",
    "right-pinky-knuckle",
    "left-middle-tip",
    "right-middle-tip",
    "left-index-knuckle",
    "right-index-knuckle",
    "left-thumb-tip",
    "right-thumb-tip",
)
POSE2D_IDS: Final = {name: index for index, name in enumerate(POSE2D_JOINTS)}
POSE25D_IDS: Final = {name: index for index, name in enumerate(POSE25D_JOINTS)}
