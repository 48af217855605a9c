"""The REALY region protocol (Chai et al., ECCV 2022; code czh-98/REALY, ``main.REALY_eval_all``):
the ``realy`` protocol, which means parity with the official code (the headline is :mod:`.robust`'s,
which departs from REALY on purpose and says so in its name).

Steps, as the official code runs them (lengths in metres here; the solver works in REALY's scan
unit, 8.9 mm, :attr:`NicpConfig.unit_m`, where its thresholds are defined):

1. Global alignment (``gICP``): the prediction's 7 keypoints onto the scan's
   (:func:`realy_global_alignment`, REALY's own scale formula, not least squares).
2. Regions (see :mod:`.regions`): nose, mouth, forehead and cheek, cut from the scan (REALY ships
   them pre-cut).
3. Regional rigid ICP (``rICP``), per region, from the global alignment each time:
   correspondences are the closest points on the prediction's surface of the region's scan
   vertices, plus the region's keypoints (:data:`RIGID_KEYPOINTS`, prediction landmark to scan
   landmark) repeated ``int(n_region / n_keypoints)`` times (``/ 4`` inside the ``int`` for the
   cheek); a rigid (no scale) fit; until the mean squared residual changes by less than ``1e-6``
   unit² or 100 iterations, the last fit not applied.
4. Non-rigid ICP (``bICP``, :mod:`.nicp`, one affine map per scan vertex): the scan region deforms
   towards the closest points ``c_i`` it had on the prediction, in the scan's own frame; each
   keypoint (:data:`NICP_KEYPOINTS`, none for the cheek) anchors the region vertex nearest to the
   scan landmark, however far, to the prediction's landmark (one anchor per vertex, the last wins).
5. Error: ``e_i = |c'_i - s_i|`` with ``s_i`` the (undeformed) scan vertex and ``c'_i`` the
   closest point on the prediction of its *deformed* position; the region's error is the mean of
   ``e_i`` in millimetres; "all" is the mean of the four region means.

Parity: on the pair in ``shared/realy-parity`` (the official code run verbatim on mvrecon's regions)
every region agrees with the official figures (``python bench/eval.py --parity``; the tolerance is
tests/evaluate/test_eval_parity.py's).

Where this differs from the official code, none of which moves the figures of a covered region:
- Step 3 moves the scan region by the inverse motion instead of moving the prediction (one
  ray-casting scene); rigid motions preserve distances, so correspondences and residuals agree.
- Step 4 solves each step's normal equations to a relative residual of 1e-5 by block conjugate
  gradients preconditioned with an earlier SuperLU factorization, instead of factoring every
  step with CHOLMOD (:mod:`.nicp`); a faint 1e-6 pull of every map to the identity keeps a region
  island without keypoints solvable, where CHOLMOD would fail.
- REALY has 85 keypoints (68 + 17 extra on nose and cheeks); here the standard 68.
- REALY's trimesh merges duplicate vertices of a scan region; ``cut_regions`` output has none.
- Coverage check (REALY has none): after step 3, region vertices whose closest point lies on the
  prediction's open border, farther than ``boundary_tol`` away, are counted as not covered; a
  region covered below ``min_coverage`` is reported missing (no number) instead of being scored
  against the prediction's border, and "all" is then undefined.

Sensitivity. Steps 3 and 4 lean on the 68 landmarks (heavy keypoint weights, keypoint anchors),
so the figure depends on the scan's landmark convention as much as on the surface: the true
surface against a scan whose brows sit 4-6 mm higher, jaw points 3-5 mm along the jaw and nose
tip 1 mm off scores many times its error against matching landmarks (``bench/eval.py
--conventions``). REALY avoids
that by having each method supply keypoints matched to its template; a scan from another scanner
or annotator does not, hence the robust headline. Step 4 also anchors a landmark that lies off
the region (REALY's regions hold their keypoints; mvrecon's cut keeps off the eye openings, where
a model's eye landmarks sit): the ICT mean head against its own subdivided copy then reads several
millimetres on the forehead (tests/evaluate/test_eval_ict.py), as the official code would on
those regions. ``RealyConfig(keypoint_snap_mm=3.0)`` drops such anchors (no longer parity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .. import threads
from ..geometry import Similarity, umeyama
from ..parts import REALY_KEYPOINTS
from ..regions import NICP_KEYPOINTS, REGION_NAMES, RIGID_KEYPOINTS, Region, face_frame
from ..render.raycast import MeshQuery
from .nicp import NicpConfig, nicp


@dataclass(frozen=True)
class RealyConfig:
    """Settings of the REALY region protocol."""

    rigid_max_iterations: int = 100
    """Iterations cap of the regional rigid ICP (REALY: 100)."""
    rigid_tolerance: float = 1e-6
    """Stop when the mean squared residual changes by less than this, in solver units² (REALY: 1e-6)."""
    nicp: NicpConfig = field(default_factory=NicpConfig)
    """Non-rigid ICP settings."""
    nicp_origin: Literal["head", "scan", "region"] = "scan"
    """Origin of the non-rigid ICP's coordinates: the scan file's origin (REALY), a head centre
    from the landmarks, or the region's centroid."""
    keypoint_snap_mm: float | None = None
    """Landmarks farther than this from every region vertex do not anchor the non-rigid ICP;
    None: every landmark anchors its nearest region vertex (REALY)."""
    min_region_vertices: int = 30
    """A scan region with fewer vertices is reported empty."""
    boundary_tol_mm: float = 1.0
    """Scan vertices nearest to the prediction's border and farther than this are not covered."""
    min_coverage: float = 0.8
    """A region with a smaller covered fraction is reported missing from the prediction."""


@dataclass(frozen=True)
class RegionResult:
    """REALY error of one region.

    ``status``: ``"ok"``, ``"missing"`` (the prediction does not cover it) or ``"empty"`` (the scan
    has no such region); ``mean_mm`` is None unless ok; ``vertex_ids`` ``(n,)`` scan vertex ids and
    ``errors_mm`` ``(n,)`` their per-vertex errors; ``coverage`` the fraction covered;
    ``transform`` the rigid motion of the scan region found by the regional ICP.
    """

    name: str
    status: str
    mean_mm: float | None
    n_vertices: int
    coverage: float
    vertex_ids: np.ndarray
    errors_mm: np.ndarray
    rigid_iterations: int = 0
    transform: Similarity | None = None
    note: str = ""


def global_alignment(pred_landmarks: np.ndarray, scan_landmarks: np.ndarray) -> Similarity:
    """Least-squares similarity taking the prediction's 7 REALY keypoints ``(68, 3)`` onto the
    scan's (the robust protocol's and the NoW metric's starting pose)."""
    k = list(REALY_KEYPOINTS)
    return umeyama(pred_landmarks[k], scan_landmarks[k], with_scale=True)


def realy_global_alignment(pred_landmarks: np.ndarray, scan_landmarks: np.ndarray) -> Similarity:
    """REALY's ``gICP``: the similarity of its ``fit_icp_RT`` taking the prediction's 7 keypoints
    ``(68, 3)`` onto the scan's. The rotation is ``U V^T`` of the SVD of the centred
    cross-covariance (no reflection check), the scale the ratio of the summed absolute centred
    coordinates (scan over rotated prediction), the translation the mean residual. The scale is
    not Umeyama's least-squares one (they differ on the parity pair), and the regional steps keep
    it, so it shows in every region."""
    k = list(REALY_KEYPOINTS)
    src = np.asarray(pred_landmarks, dtype=np.float64)[k]
    dst = np.asarray(scan_landmarks, dtype=np.float64)[k]
    cs, cd = src - src.mean(0), dst - dst.mean(0)
    u, _, vt = np.linalg.svd(cd.T @ cs)
    rot = u @ vt
    scale = float(np.abs(cd).sum() / np.abs(cs @ rot.T).sum())
    return Similarity(scale, rot, (dst - scale * src @ rot.T).mean(0))


def regional_rigid_icp(
    query: MeshQuery,
    region_vertices: np.ndarray,
    region_name: str,
    pred_keypoints: np.ndarray,
    scan_keypoints: np.ndarray,
    cfg: RealyConfig,
    keypoint_total: float | None = None,
    max_points: int | None = None,
    max_iterations: int | None = None,
    seed: int = 0,
) -> tuple[Similarity, int]:
    """Rigid motion of the scan region ``(n, 3)`` onto the prediction (REALY rICP, inverted).

    ``pred_keypoints``/``scan_keypoints`` ``(k, 3)`` are the region's keypoints. They weigh REALY's
    ``int(n / k)`` vertices each (``keypoint_total`` None: the keypoints together weigh as much as
    the whole region), or ``keypoint_total / k`` each (together as much as ``keypoint_total``
    vertices). ``max_points``: fit a fixed random subset of at most that many region vertices (a
    rigid motion has 6 unknowns); ``max_iterations`` replaces ``cfg.rigid_max_iterations``.
    Returns the motion and the number of iterations run.
    """
    if max_points is not None and len(region_vertices) > max_points:
        keep = np.random.default_rng(seed).choice(len(region_vertices), max_points, replace=False)
        region_vertices = region_vertices[keep]
    cap = cfg.rigid_max_iterations if max_iterations is None else max_iterations
    n = len(region_vertices)
    if keypoint_total is None:
        rate = n / len(scan_keypoints)
        if region_name == "cheek":
            rate /= 4.0
        rate = float(int(rate))  # REALY repeats the keypoints int(rate) times
    else:
        rate = keypoint_total / len(scan_keypoints)
    weights = np.r_[np.ones(n), np.full(len(scan_keypoints), rate)]
    tol = cfg.rigid_tolerance * cfg.nicp.unit_m**2
    total = Similarity(1.0, np.eye(3), np.zeros(3))
    cur = region_vertices
    cur_kp = scan_keypoints
    err_prev = 0.0
    it = 0
    while True:
        cp = query.closest(cur)
        src = np.concatenate([cur, cur_kp], 0)
        dst = np.concatenate([cp.points, pred_keypoints], 0)
        step = umeyama(src, dst, weights=weights, with_scale=False)
        moved = step.apply(src)
        err = float((weights * ((moved - dst) ** 2).sum(1)).sum() / weights.sum())
        if abs(err - err_prev) < tol or it >= cap:
            break
        it += 1
        err_prev = err
        total = total.then(step)
        cur = step.apply(cur)
        cur_kp = step.apply(cur_kp)
    return total, it


def evaluate_region(
    query: MeshQuery,
    region: Region,
    pred_landmarks: np.ndarray,
    scan_landmarks: np.ndarray,
    cfg: RealyConfig,
    keypoint_total: float | None = None,
    nicp_keypoints: dict[str, tuple[int, ...]] = NICP_KEYPOINTS,
    anchor_offset: bool = False,
    nicp_cfg: NicpConfig | None = None,
    rigid_points: int | None = None,
    rigid_iterations: int | None = None,
) -> RegionResult:
    """Steps 3-5 for one region. Prediction and scan landmarks ``(68, 3)`` in the aligned frame.

    ``keypoint_total`` weighs the keypoints of the rigid step (see :func:`regional_rigid_icp`);
    ``nicp_keypoints`` names the landmarks that may anchor the non-rigid step, per region. An
    anchor is the region vertex nearest to the scan landmark, pulled to the prediction's landmark
    (REALY, whose keypoints lie exactly on its regions), or with ``anchor_offset`` to that
    landmark plus the vertex's offset from the scan landmark: the anchor then asks for the
    landmark's displacement only, not for the snap's millimetre as well. ``nicp_cfg`` replaces
    ``cfg.nicp``; ``rigid_points`` and ``rigid_iterations`` go to :func:`regional_rigid_icp`.
    """
    from scipy.spatial import cKDTree

    name = region.name
    n = len(region.vertex_ids)
    empty = np.zeros(0)
    if n < cfg.min_region_vertices or len(region.triangles) == 0:
        return RegionResult(name, "empty", None, n, 0.0, region.vertex_ids, empty, note=f"scan region has {n} vertices")
    rk = list(RIGID_KEYPOINTS[name])
    motion, iters = regional_rigid_icp(
        query,
        region.vertices,
        name,
        pred_landmarks[rk],
        scan_landmarks[rk],
        cfg,
        keypoint_total,
        rigid_points,
        rigid_iterations,
    )
    verts = motion.apply(region.vertices)
    scan_lm = motion.apply(scan_landmarks)

    cp0 = query.closest(verts)
    uncovered = query.on_boundary(cp0) & (cp0.distances > cfg.boundary_tol_mm * 1e-3)
    coverage = 1.0 - float(uncovered.mean())
    if coverage < cfg.min_coverage:
        return RegionResult(
            name, "missing", None, n, coverage, region.vertex_ids, cp0.distances * 1e3, iters, motion,
            note=f"prediction covers {100 * coverage:.0f}% of the scan's {name} (< {100 * cfg.min_coverage:.0f}%)",
        )  # fmt: skip

    nk = list(nicp_keypoints[name])
    if nk:
        dist, kp_ids = cKDTree(verts).query(scan_lm[nk])
        # a landmark on an edge the cut left out (an eye or mouth opening of the scan) would snap to
        # a vertex centimetres away and drag the region with it: only landmarks on the region anchor it
        on_region = np.ones(len(nk), bool) if cfg.keypoint_snap_mm is None else dist <= cfg.keypoint_snap_mm * 1e-3
        kp_tgt = pred_landmarks[nk][on_region]
        if anchor_offset:
            kp_tgt = kp_tgt + verts[kp_ids[on_region]] - scan_lm[nk][on_region]
        kp_ids, kp_tgt = _one_anchor_per_vertex(kp_ids[on_region], kp_tgt)
    else:
        kp_ids, kp_tgt = np.zeros(0, np.int64), np.zeros((0, 3))
    deformed = nicp(
        verts,
        region.triangles,
        cp0.points,
        kp_ids,
        kp_tgt,
        nicp_cfg or cfg.nicp,
        origin=_nicp_origin(scan_lm, motion, verts, cfg),
    )
    cp1 = query.closest(deformed)
    err_mm = np.linalg.norm(cp1.points - verts, axis=1) * 1e3
    # scored like REALY over every vertex, but a partly uncovered region says so
    note = (
        ""
        if coverage >= 0.995
        else f"prediction covers {100 * coverage:.0f}%; uncovered vertices count as their distance to its border"
    )
    return RegionResult(name, "ok", float(err_mm.mean()), n, coverage, region.vertex_ids, err_mm, iters, motion, note)


def _one_anchor_per_vertex(ids: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two landmarks that snap to one vertex give it one anchor, the later landmark's target:
    REALY writes the keypoints' weights and targets into per-vertex arrays, so the last one wins."""
    last = {int(v): i for i, v in enumerate(ids)}
    keep = np.array(sorted(last.values()), dtype=np.int64)
    return ids[keep], targets[keep]


def head_centre(landmarks: np.ndarray) -> np.ndarray:
    """A head-centred origin ``(3,)`` from landmarks ``(68, 3)``: one eye distance ``d`` behind and
    ``d / 2`` below the point between the eyes (about the centre of a head model's frame)."""
    fr = face_frame(landmarks)
    return fr.origin - fr.unit * fr.axes[2] - 0.5 * fr.unit * fr.axes[1]


def _nicp_origin(scan_lm: np.ndarray, motion: Similarity, verts: np.ndarray, cfg: RealyConfig) -> np.ndarray:
    if cfg.nicp_origin == "head":
        return head_centre(scan_lm)
    if cfg.nicp_origin == "scan":
        return motion.apply(np.zeros((1, 3)))[0]
    return verts.mean(0)


@dataclass(frozen=True)
class ProtocolResult:
    """The four regions' errors under one protocol.

    ``name`` ``"robust"``, ``"realy"`` or ``"unaligned"``; ``regions`` per region name;
    ``alignment`` the similarity taking the prediction onto the scan before the regional steps
    (the identity for ``"unaligned"``).
    """

    name: str
    regions: dict[str, RegionResult]
    alignment: Similarity

    @property
    def all_mm(self) -> float | None:
        """Mean of the four region means, or None when a region has no number."""
        vals = [self.regions[r].mean_mm for r in REGION_NAMES]
        known = [v for v in vals if v is not None]
        if len(known) < len(vals):
            return None
        return float(np.mean(known))

    @property
    def missing_regions(self) -> list[str]:
        return [r for r in REGION_NAMES if self.regions[r].status != "ok"]


def realy_protocol(
    pred_vertices: np.ndarray,
    pred_triangles: np.ndarray,
    pred_landmarks: np.ndarray,
    regions: dict[str, Region],
    scan_landmarks: np.ndarray,
    cfg: RealyConfig = RealyConfig(),
    timings: dict[str, float] | None = None,
) -> ProtocolResult:
    """Steps 1-5 (module docstring) for a prediction ``(n, 3)``/``(m, 3)`` with landmarks
    ``(68, 3)``, in its own frame, against scan ``regions`` and ``scan_landmarks`` ``(68, 3)``.
    ``timings`` (optional) receives the seconds of each region as ``realy_<region>``.

    The regions are independent after the global alignment: with more than one thread in force
    (:func:`mvrecon.threads.count`) they run side by side, largest first, each with its part of
    the threads (the sparse factorizations and solves release the GIL). The figures do not depend
    on how many run at once."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    align = realy_global_alignment(pred_landmarks, scan_landmarks)
    query = MeshQuery(align.apply(pred_vertices), pred_triangles)
    plm = align.apply(pred_landmarks)
    order = sorted(REGION_NAMES, key=lambda r: -len(regions[r].vertex_ids))
    workers = min(threads.count(), len(order))
    share = max(1, threads.count() // workers)

    def one(name: str) -> tuple[RegionResult, float]:
        t = time.perf_counter()
        with threads.limited(share):
            r = evaluate_region(query, regions[name], plm, scan_landmarks, cfg)
        return r, time.perf_counter() - t

    if workers > 1:
        # Open3D builds its scene on the first query, the query its border on the first use: once,
        # not in two threads at a time
        query.on_boundary(query.closest(plm[:1]))
        # the regions' BLAS calls are small; a BLAS pool per thread would only oversubscribe
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            done = dict(zip(order, pool.map(one, order)))
    else:
        done = {name: one(name) for name in order}
    results = {name: done[name][0] for name in REGION_NAMES}
    if timings is not None:
        timings.update({f"realy_{name}": done[name][1] for name in REGION_NAMES})
    return ProtocolResult("realy", results, align)
