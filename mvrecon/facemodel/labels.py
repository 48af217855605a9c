"""Per-vertex part labels, the forehead flag and REALY-style evaluation regions, derived from a
model's own iBUG-68 landmarks and geometry (shared by every importer).

The mean face is projected orthographically from the front (image x = model x, image y = -model y,
so image y grows downwards as in a frontal OpenCV camera) and the same polygons as the 2D cues
(:func:`mvrecon.parts.points_in_parts`) label the vertices a frontal camera sees:

- frontal visibility is exact: a ray from each vertex towards +Z must not hit the render mesh
  (Open3D ray casting), so lids hide the eyeball parts behind them and the cheek hides the ear;
- eye parts are "the eye opening": the visible eyeball (sclera and iris) between the lid margins,
  plus the lid-margin skin inside the landmark polygon, exactly what the 2D eye polygon covers;
- vertices hidden from the front keep code 0, except the underside of the nose (nostrils,
  columella), which projects into the nose polygon and is nose for any camera below the face.

``forehead``: visible skin-side vertices above the brows' upper edge (between the outer brow ends
widened by 15 % of the inter-ocular distance), cut from PRDL's skin.

REALY regions (nose, mouth, forehead, cheek) are cut with the same rule the evaluation applies to
scans, :func:`mvrecon.regions.region_labels` (landmark face frame, see its doc), restricted
to the skin vertices a frontal camera sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..parts import PART_CODES, _frame, part_label_image, part_polygons, points_in_parts


def frontal_projection(verts: np.ndarray) -> np.ndarray:
    """(N, 2) orthographic frontal image coordinates (x right, y down) of model-space (N, 3)."""
    v = np.asarray(verts, dtype=np.float64)
    return np.stack([v[:, 0], -v[:, 1]], axis=1)


def frontal_visibility(verts: np.ndarray, triangles: np.ndarray, offset: float = 2e-5) -> np.ndarray:
    """(N,) bool: vertices an orthographic camera looking down -Z sees (no triangle in front).

    ``offset`` (metres) lifts the ray origin off the vertex's own triangles.
    """
    from ..render.raycast import MeshScene

    v = np.asarray(verts, dtype=np.float32)
    rays = np.zeros((len(v), 6), np.float32)
    rays[:, :3] = v
    rays[:, 2] += offset
    rays[:, 5] = 1.0
    hit = MeshScene(v, triangles).cast(rays).t_hit
    return ~np.isfinite(hit)


def _poly_contains(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    from matplotlib.path import Path as MplPath

    return MplPath(poly).contains_points(pts)


def _brow_line_y(lm: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Image y of the brows' upper edge above each x (linear between brow landmarks, flat outside)."""
    brow = lm[17:27]
    order = np.argsort(brow[:, 0])
    return np.interp(x, brow[order, 0], brow[order, 1])


def _above_brows(p2: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(N,) bool: points above the brows' upper edge, between the outer brow ends widened by
    0.15 iod (image coordinates, y down)."""
    _, _, iod = _frame(lm)
    x_lo = min(lm[17, 0], lm[26, 0]) - 0.15 * iod
    x_hi = max(lm[17, 0], lm[26, 0]) + 0.15 * iod
    return (p2[:, 0] >= x_lo) & (p2[:, 0] <= x_hi) & (p2[:, 1] < _brow_line_y(lm, p2[:, 0]))


@dataclass(frozen=True)
class Labels:
    """What :func:`derive_labels` gives a model."""

    part_labels: np.ndarray
    """(N,) uint8 part codes."""
    forehead: np.ndarray
    """(N,) bool."""
    regions: dict[str, np.ndarray]
    """REALY region name -> vertex indices (M,) int64."""


def derive_labels(
    mean: np.ndarray,
    triangles: np.ndarray,
    landmarks68: np.ndarray,
    skin: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
) -> Labels:
    """Part labels, forehead flag and regions for a model (see the module doc).

    ``mean`` (N, 3) metres, model space; ``triangles`` (F, 3): the render mesh (occluders);
    ``skin`` (N,) bool: skin-surface vertices (the face sub-mesh; default all) which may carry
    skin, nose, brow, lip, forehead and region labels; ``candidates`` (N,) bool: vertices that
    may carry any label (default: those of ``triangles``), e.g. skin plus eyeballs.
    """
    v = np.asarray(mean, dtype=np.float64)
    n = len(v)
    tri = np.asarray(triangles)
    if candidates is None:
        candidates = np.zeros(n, bool)
        candidates[tri.reshape(-1)] = True
    skin = candidates.copy() if skin is None else (np.asarray(skin, bool) & candidates)
    p2 = frontal_projection(v)
    lm = p2[np.asarray(landmarks68)]
    visible = frontal_visibility(v, tri) & candidates

    codes = np.zeros(n, np.uint8)
    codes[visible] = points_in_parts(p2[visible], lm)
    polys = part_polygons(lm)
    hidden_nose = skin & ~visible & _poly_contains(polys["nose"], p2)
    codes[hidden_nose] = PART_CODES["nose"]
    # non-skin candidates (eyeballs) carry eye labels only: the rest of them is hidden or
    # outside the eye openings
    eye_codes = (PART_CODES["right_eye"], PART_CODES["left_eye"])
    nonskin = candidates & ~skin
    codes[nonskin & ~np.isin(codes, eye_codes)] = 0

    forehead = skin & visible & _above_brows(p2, lm) & (codes == 0)
    # one definition of the REALY regions for scans and models: mvrecon.evaluate's
    from ..regions import REGION_NAMES, region_labels

    region_code = region_labels(v, v[np.asarray(landmarks68)])
    regions = {
        name: np.flatnonzero((region_code == i) & skin & visible).astype(np.int64)
        for i, name in enumerate(REGION_NAMES)
    }
    return Labels(codes, forehead, regions)


# ------------------------------------------------------------------------- verification


def render_vertex_labels(
    verts: np.ndarray,
    triangles: np.ndarray,
    vertex_labels: np.ndarray,
    K: np.ndarray,
    world_to_cam: np.ndarray,
    height: int,
    width: int,
) -> np.ndarray:
    """Render per-vertex labels through a pinhole camera (OpenCV conventions) with
    :func:`mvrecon.render.rasterize`: each pixel takes the label of the hit triangle's corner with
    the largest barycentric weight (its nearest vertex); 0 where nothing is hit. (H, W) uint8."""
    import torch

    from ..render import rasterize

    tri = np.asarray(triangles, dtype=np.int64)
    frags = rasterize(
        torch.as_tensor(np.asarray(verts), dtype=torch.float64),
        torch.as_tensor(tri),
        torch.as_tensor(np.asarray(K, np.float64))[None],
        torch.as_tensor(np.asarray(world_to_cam, np.float64))[None],
        height,
        width,
        backend="raycast",
    )
    tri_id = frags.tri_id[0].numpy()
    bary = frags.bary[0].detach().numpy()
    hit = tri_id >= 0
    out = np.zeros((height, width), np.uint8)
    corner = np.argmax(bary[hit], axis=1)
    out[hit] = np.asarray(vertex_labels)[tri[tri_id[hit], corner]]
    return out


def project(points: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """(M, 2) pixel coordinates of world points (M, 3) through an OpenCV pinhole camera."""
    T = np.asarray(world_to_cam, np.float64)
    pc = np.asarray(points, np.float64) @ T[:3, :3].T + T[:3, 3]
    uvw = pc @ np.asarray(K, np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def label_iou(rendered: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """IoU per part code present in ``expected`` (name -> IoU) between two label images."""
    from ..parts import PART_NAMES

    out = {}
    for code, name in enumerate(PART_NAMES):
        if code == 0:
            continue
        a, b = rendered == code, expected == code
        union = int((a | b).sum())
        if (b.sum()) == 0:
            continue
        out[name] = float((a & b).sum() / union)
    return out


def look_at_camera(
    target: np.ndarray, distance: float, yaw_deg: float, focal: float, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(K, world_to_cam)`` of a camera ``distance`` metres in front of ``target`` (model +Z),
    rotated ``yaw_deg`` about the model's +Y axis, looking at ``target`` with image y down."""
    a = np.deg2rad(yaw_deg)
    target = np.asarray(target, np.float64)
    centre = target + distance * np.array([np.sin(a), 0.0, np.cos(a)])
    z = target - centre
    z /= np.linalg.norm(z)
    y_world_down = np.array([0.0, -1.0, 0.0])
    x = np.cross(y_world_down, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ centre
    K = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])
    return K, T


def check_labels(model, yaw_deg: float = 0.0, size: int = 1024) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Render ``model``'s mean face labels through a camera at ``yaw_deg`` and compare with the
    part polygons of its projected landmarks. Returns (IoU per part, rendered, expected)."""
    verts = model.mean.astype(np.float64)
    lm3 = verts[model.landmarks68]
    iod = float(np.linalg.norm(lm3[36:42].mean(0) - lm3[42:48].mean(0)))
    target = lm3[[36, 45, 48, 54, 8, 19, 24]].mean(0)
    distance = 10 * iod  # ~0.6 m for a human head
    focal = size * distance / (4.2 * iod)  # the face spans most of the image
    K, T = look_at_camera(target, distance, yaw_deg, focal, size, size)
    tri = model.render_triangles()
    rendered = render_vertex_labels(verts, tri, model.part_labels, K, T, size, size)
    expected = part_label_image(project(lm3, K, T), size, size)
    return label_iou(rendered, expected), rendered, expected
