"""The ``detail`` stage: the fine layer (wrinkles, pores) at the photos' full resolution, written
into ``SESSION/detail/`` (one atomic folder replacement).

Per expression group (frame) of the fit, the face tile's texel grid on the fitted surface
(:mod:`.grid`) is seen by that group's views at their full resolution (:mod:`.observe`), and the
height field whose shading the views agree on is solved for (:mod:`.solve`). The mid layer is
the fit's (its deformation map and displacement); this stage adds the fine band only.

Outputs::

    fine.npz        fine (G, R, R) float32 metres along the fitted normal over the face UV tile
                    (v up, rows from the top), groups (G,), size; mid (G, R, R) the mid band
                    (when ``SolveSettings.mid_mm`` is set or the parallax depth is on); with
                    several groups identity (R, R), the fine band they share, and expression
                    (G, R, R) float16, where each group keeps its own (:mod:`.frames`); fine is
                    then identity + expression x (the group's own solve - identity)
    trust.png       8-bit: where the shading was taken as geometry (0: an albedo feature)
    preview.png     the shared fine band, grey (mid-grey 0, +-0.5 mm full scale)
    summary.json    per group: texel size, views, data residual before/after, fine RMS; seconds
    config.json     the resolved DetailConfig
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, StageMissing
from ..fit.result import FittedHead, load_fit
from ..io import atomic_dir, write_image, write_json
from .config import DetailConfig
from .grid import face_grid, surface_texels
from .observe import observe_views
from .solve import DetailSolution, parallax_depth_map, solve_height

log = logging.getLogger(__name__)

FILES = ("fine.npz", "summary.json")


@dataclass(frozen=True)
class DetailMaps:
    """What the detail stage wrote (:func:`load_detail`)."""

    fine: np.ndarray
    """(G, R, R) float32 metres along the normal over the face UV tile (v up, rows from the top)."""
    groups: list[str]
    """The fit's expression groups (frames), in the fit's order."""
    mid: np.ndarray | None = None
    """(G, R, R) float32 metres: the mid band, a smooth correction of the fitted surface along its
    normal (the views' shading between the fine cut and ``SolveSettings.mid_mm``, plus the
    parallax depth when that is on; None when not estimated)."""

    identity: np.ndarray | None = None
    """(R, R) float32 metres: the fine band shared by the groups (:mod:`.frames`; None for a
    single group or an older stage output)."""
    expression: np.ndarray | None = None
    """(G, R, R) float32 in [0, 1]: each group's expression region (where its own fine band
    replaces the identity's; None with the identity)."""

    @property
    def shared(self) -> np.ndarray:
        """(R, R) the fine band common to every group: the identity's detail (their mean when the
        stage did not split them)."""
        return self.identity if self.identity is not None else self.fine.mean(0)

    @property
    def shared_mid(self) -> np.ndarray | None:
        """(R, R) the mid band's mean over the groups (None when not estimated)."""
        return None if self.mid is None else self.mid.mean(0)

    @property
    def displacement(self) -> np.ndarray:
        """(R, R) what the texture stage adds to the fit's displacement: fine plus mid band."""
        mid = self.shared_mid
        return self.shared if mid is None else self.shared + mid

    @property
    def size(self) -> int:
        return int(self.fine.shape[-1])


@dataclass(frozen=True)
class DetailStageResult:
    out_dir: Path
    maps: DetailMaps
    summary: dict
    seconds: float


def grid_size(head: FittedHead, views, cfg: DetailConfig) -> tuple[int, float]:
    """(grid size, face-tile span in mm): the power of two whose texel is about the finest pixel
    footprint (mm) of the views on the face, within the configured bounds."""
    probe = face_grid(head, 128)
    surf = surface_texels(head, probe, int(views[0].group))
    span_mm = probe.size * surf.texel_mm(probe.size)
    foot = []
    for v in views:
        d = np.linalg.norm(surf.points.mean(0) - v.camera.center)
        foot.append(d / v.camera.K[0, 0] * 1e3)
    need = span_mm / max(min(foot), 1e-6)
    size = int(2 ** np.ceil(np.log2(max(need, 1.0))))
    return int(np.clip(size, cfg.min_size, cfg.max_size)), span_mm


def refine_group(head: FittedHead, group: int, views, cfg: DetailConfig, size: int) -> tuple[DetailSolution, dict]:
    """Solve the fine band of one expression group from its views (``BakeView`` list)."""
    model = head.model
    from ..facemodel.model import RENDER_SUBMESHES
    from ..texture.bake import OPAQUE_INNER

    t0 = time.perf_counter()
    grid = face_grid(head, size)
    surf = surface_texels(head, grid, group)
    verts = head.world(group, detail=True)
    occluders = model.render_triangles(tuple(RENDER_SUBMESHES) + OPAQUE_INNER)
    obs = observe_views(surf, views, verts, occluders, cfg.min_cos, cfg.angle_power, cfg.feather_px)
    texel_mm = surf.texel_mm(size)
    mid = None
    if cfg.solve.parallax_depth and len(views) > 1:
        # where the fit is off the true surface each view sees another point of it: look again
        # from the surface the views' parallax shows (same normals; the fine band is on top of it)
        mid = parallax_depth_map(grid.mask, obs, texel_mm, cfg.solve) * 1e-3
        moved = dataclasses.replace(
            surf, points=surf.points + mid[grid.mask][:, None].astype(np.float64) * surf.normals
        )
        obs = observe_views(
            moved, views, verts, occluders, cfg.min_cos, cfg.angle_power, cfg.feather_px, visible_from=surf.points
        )
    t1 = time.perf_counter()
    sol = solve_height(grid.mask, obs, texel_mm, cfg.solve, mid=mid)
    log.info("detail: group %d: grid and views %.1f s, solve %.1f s", group, t1 - t0, time.perf_counter() - t1)
    m = grid.mask & (sol.seen > 0)
    info = {
        "views": [v.key for v in views],
        "texel_mm": round(texel_mm, 4),
        "seen_fraction": float(m.sum() / max(grid.mask.sum(), 1)),
        "trusted_fraction": float((sol.trust[m] > 0.5).mean()) if m.any() else 0.0,
        "view_shift_p95_mm": sol.view_shift_mm,
        "residual_before": round(sol.residual0, 5),
        "residual_after": round(sol.residual, 5),
        "gain": round(sol.gain, 3),
        "halves_correlation": None if sol.halves_r is None else round(sol.halves_r, 3),
        "reliability": round(sol.reliability, 3),
        "fine_rms_um": round(float(np.sqrt((sol.fine[m] ** 2).mean())) * 1e6, 2) if m.any() else 0.0,
    }
    return sol, info


def split_groups(
    head: FittedHead, cfg: DetailConfig, size: int, fines: np.ndarray, solved: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identity (R, R), expression regions (G, R, R), fine bands (G, R, R)) from the groups' own
    fine bands ``fines`` (G, R, R) of the groups in ``solved`` (the others are left as they are,
    with expression 1)."""
    from .frames import expression_regions, principal_log_stretch, split_frames
    from .grid import surface_of

    grid = face_grid(head, size)
    neutral = surface_of(head.model, grid, head.neutral_model_space() * head.scale)
    texel_mm = neutral.texel_mm(size)
    E = np.ones_like(fines)
    for g in solved:
        stretch = principal_log_stretch(neutral, surface_texels(head, grid, g, detail=False))
        E[g] = expression_regions(stretch, grid.mask, texel_mm, cfg.expression_stretch, cfg.expression_blur_mm)
    identity, frames = split_frames(fines[solved], E[solved])
    out = np.array(fines, np.float32, copy=True)
    out[solved] = frames
    return identity, E, out


def run(cfg: DetailConfig, session) -> DetailStageResult:
    """The fine band of every fitted group from the fit and the photos, into ``detail/`` (the
    pipeline runs it through :data:`mvrecon.detail.stagedef.STAGE`)."""
    from ..texture.stage import bake_views

    out = session.stage_dir("detail")
    head = load_fit(session.stage_dir("fit"))
    t0 = time.perf_counter()
    views = bake_views(session, head)
    if not views:
        raise InputError("the fit has no views to refine the detail from", session.stage_dir("fit"))
    size, span = grid_size(head, views, cfg)
    log.info(
        "detail: %d group(s), %d views, grid %dx%d over a %.0f mm face tile",
        len(head.groups),
        len(views),
        size,
        size,
        span,
    )
    fines: list[np.ndarray] = []
    mids: list[np.ndarray | None] = []
    trusts: list[np.ndarray] = []
    groups_info: dict[str, dict] = {}
    for g, name in enumerate(head.groups):
        gviews = [v for v in views if v.group == g]
        if not gviews:
            fines.append(np.zeros((size, size), np.float32))
            mids.append(None)
            trusts.append(np.zeros((size, size), np.float32))
            groups_info[name] = {"views": []}
            continue
        sol, info = refine_group(head, g, gviews, cfg, size)
        fines.append(sol.fine)
        mids.append(sol.mid)
        trusts.append(sol.trust)
        groups_info[name] = info
        log.info("detail: %s: %s", name, info)
    identity = expression = None
    solved = [g for g, name in enumerate(head.groups) if groups_info[name].get("views")]
    if len(solved) > 1:
        identity, expression, split = split_groups(head, cfg, size, np.stack(fines), solved)
        fines = list(split)
        face = face_grid(head, size).mask
        for g in solved:
            groups_info[head.groups[g]]["expression_fraction"] = round(float((expression[g][face] > 0.5).mean()), 4)
    secs = time.perf_counter() - t0
    mid = None
    if any(m is not None for m in mids):
        mid = np.stack([np.zeros((size, size), np.float32) if m is None else m for m in mids]).astype(np.float32)
    maps = DetailMaps(np.stack(fines).astype(np.float32), list(head.groups), mid, identity, expression)
    summary = {"size": size, "face_tile_mm": round(span, 1), "groups": groups_info, "seconds": round(secs, 2)}
    write_detail(out, maps, np.mean(trusts, 0), cfg, summary)
    return DetailStageResult(out, maps, summary, secs)


def write_detail(out_dir: Path, maps: DetailMaps, trust: np.ndarray, cfg: DetailConfig, summary: dict) -> Path:
    import io

    from ..io import write_bytes

    buf = io.BytesIO()
    extra = {} if maps.mid is None else {"mid": maps.mid}
    if maps.identity is not None and maps.expression is not None:
        extra.update(identity=maps.identity, expression=maps.expression.astype(np.float16))
    np.savez_compressed(buf, fine=maps.fine, groups=np.array(maps.groups), size=np.array(maps.size), **extra)
    with atomic_dir(out_dir) as tmp:
        write_bytes(tmp / "fine.npz", buf.getvalue())
        write_image(tmp / "trust.png", np.clip(np.round(trust * 255), 0, 255).astype(np.uint8))
        prev = np.clip(np.round((0.5 + maps.shared / 1e-3) * 255), 0, 255).astype(np.uint8)
        write_image(tmp / "preview.png", prev)
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "config.json", cfg.to_dict())
    return out_dir


def load_detail(detail_dir: str | Path) -> DetailMaps:
    """Read the detail stage's ``fine.npz`` back."""
    p = Path(detail_dir) / "fine.npz"
    if not p.is_file():
        raise StageMissing("no detail yet: run 'mvrecon detail SESSION' (or 'mvrecon session run')", p)
    try:
        with np.load(p, allow_pickle=False) as z:
            fine = np.asarray(z["fine"], np.float32)
            groups = [str(g) for g in z["groups"]]
            mid = np.asarray(z["mid"], np.float32) if "mid" in z.files else None
            identity = np.asarray(z["identity"], np.float32) if "identity" in z.files else None
            expression = np.asarray(z["expression"], np.float32) if "expression" in z.files else None
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot read the detail maps ({e})", p) from None
    if fine.ndim != 3 or fine.shape[1] != fine.shape[2] or len(groups) != fine.shape[0]:
        raise InputError(f"detail maps of shape {fine.shape} do not match {len(groups)} group(s)", p)
    if identity is None or expression is None or identity.shape != fine.shape[1:] or expression.shape != fine.shape:
        identity = expression = None
    return DetailMaps(fine, groups, mid if mid is not None and mid.shape == fine.shape else None, identity, expression)
