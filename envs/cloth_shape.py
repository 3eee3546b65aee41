"""Shape measures of a square cloth grid, the vocabulary of the towel-folding rubric.

All lengths are in units of the towel's side L, all areas in L², so thresholds do not
depend on the towel's size. Measured states (SIM_NOTES, and the tests here): flat — hull
1.0, layers 1; half fold — hull ≈ 0.5, layers 2, two corner pairs together; quarter fold —
hull ≈ 0.25–0.30, layers ≥ 3, all four corners together; crumpled — hull 0.4–0.9, poor
rectangularity, high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError


def corner_indices(n: int) -> np.ndarray:
    """Vertex indices of the corners (ix, iy) = (0,0), (0,n-1), (n-1,0), (n-1,n-1)."""
    return np.array([0, n - 1, n * (n - 1), n * n - 1])


# Corner pairs that a half fold along each grid axis brings together: folding the iy = n-1
# edge onto iy = 0 pairs corners (0,1) and (2,3); folding ix = n-1 onto ix = 0 pairs (0,2), (1,3).
FOLD_PAIRS = (((0, 1), (2, 3)), ((0, 2), (1, 3)))


@dataclass(frozen=True)
class ClothShape:
    corner_gaps: np.ndarray  # [4, 4] corner-to-corner distances / L
    hull: float  # convex-hull area of the vertices seen from above / L²
    rectangularity: float  # hull area / area of the smallest enclosing rectangle
    layers: float  # median number of cloth layers over the cloth (1 when flat)
    height: float  # highest vertex above the table / L

    def half_fold_gap(self, axis: int) -> float:
        """The larger of the two corner-pair distances a half fold along `axis` closes."""
        return max(self.corner_gaps[a, b] for a, b in FOLD_PAIRS[axis])

    def half_fold_span(self, axis: int) -> float:
        """How far apart the two closed pairs lie: the folded strip's length, ≈ 1 in a true
        half fold and shorter when the cloth is bunched together instead."""
        (a, b), (c, d) = FOLD_PAIRS[axis]
        return float(min(self.corner_gaps[a, c], self.corner_gaps[b, d]))

    @property
    def max_corner_gap(self) -> float:
        return float(self.corner_gaps.max())


def measure(vertices: np.ndarray, triangles: np.ndarray, n: int, side: float,
            table_z: float = 0.0) -> ClothShape:
    """Shape of an n × n cloth from its vertex positions [n², 3] and triangles [T, 3]."""
    corners = vertices[corner_indices(n)]
    gaps = np.linalg.norm(corners[:, None] - corners[None], axis=-1) / side
    xy = vertices[:, :2]
    hull_area, rect_area = _hull_and_rectangle(xy)
    return ClothShape(
        corner_gaps=gaps,
        hull=hull_area / side**2,
        rectangularity=hull_area / rect_area if rect_area > 0 else 0.0,
        layers=float(np.median(_layer_counts(xy, triangles))),
        height=float((vertices[:, 2].max() - table_z) / side),
    )


def _hull_and_rectangle(xy: np.ndarray) -> tuple[float, float]:
    """Convex-hull area and the area of the minimum-area enclosing rectangle (one of its
    sides lies along a hull edge, so trying every edge direction finds it)."""
    try:
        hull = ConvexHull(xy)
    except QhullError:  # all points on a line: a cloth pulled into a rope has no area
        return 0.0, 0.0
    points = xy[hull.vertices]
    edges = np.diff(np.vstack([points, points[:1]]), axis=0)
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    rotations = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # edge direction u
    along = points @ rotations.T  # [P, E]: coordinate along each u
    across = points @ np.stack([-rotations[:, 1], rotations[:, 0]], axis=1).T
    areas = np.ptp(along, axis=0) * np.ptp(across, axis=0)
    return float(hull.volume), float(areas.min())


def _layer_counts(xy: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """For each triangle's centroid, how many triangles cover it seen from above."""
    a, b, c = xy[triangles[:, 0]], xy[triangles[:, 1]], xy[triangles[:, 2]]
    centroids = (a + b + c) / 3.0
    v0, v1 = b - a, c - a  # [T, 2]
    denom = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    valid = np.abs(denom) > 1e-12
    rel = centroids[:, None, :] - a[None]  # [P, T, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (rel[..., 0] * v1[:, 1] - rel[..., 1] * v1[:, 0]) / denom
        v = (v0[:, 0] * rel[..., 1] - v0[:, 1] * rel[..., 0]) / denom
    inside = valid & (u >= 0) & (v >= 0) & (u + v <= 1)
    return inside.sum(axis=1)
