"""Compound primitive shapes that MuJoCo has no geom for."""

from __future__ import annotations

import math

from pi0bench.envs.scene import WORLD_CONTACT, fmt


def hollow_cylinder_geoms(name: str, inner: float, outer: float, height: float, mass: float,
                          rgba: str, segments: int = 12, extra: str = "") -> str:
    """A tube along the body's z axis, centred on its origin, as a ring of `segments` boxes.

    MuJoCo collides a mesh as its convex hull (a tube would be a solid cylinder), so the wall
    is built from boxes that overlap slightly at their joints; a rod through the hole really
    passes through (SIM_NOTES: 8-16 segments sit stably on a spindle and slide off and on).
    """
    radius = (inner + outer) / 2
    half_wall = (outer - inner) / 2
    half_chord = 1.04 * radius * math.tan(math.pi / segments) + half_wall * math.tan(math.pi / segments)
    geoms = []
    for k in range(segments):
        angle = 2 * math.pi * k / segments
        pos = (radius * math.cos(angle), radius * math.sin(angle), 0.0)
        quat = (math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2))
        geoms.append(
            f'<geom name="{name}_{k}" type="box" pos="{fmt(pos)}" quat="{fmt(quat)}" '
            f'size="{half_wall:.6g} {half_chord:.6g} {height / 2:.6g}" mass="{mass / segments:.6g}" '
            f'rgba="{rgba}" {WORLD_CONTACT} {extra}/>'
        )
    return "\n".join(geoms)
