"""The fine layer: how much of the synthetic heads' wrinkles and pores the detail stage recovers.

    python bench/detail.py [--sizes 1024x768,2048x1536] [--rungs clean,full] [--seed 7] [--views 4]
                           [--preset default] [--work DIR] [--mid-mm MM] [--repeats N] [--profile N]
                           [--no-split-half]

Each session (``mvrecon.synth``, cached in ``--work``) goes through the pipeline up to the fit
(preset ``--preset``), then the detail stage runs (timed). Against the truth (the synthetic head's
detailed surface, rebuilt from ``gt/gt.npz`` exactly as the renderer had it), over the texels of
the face tile on the fitted surface:

- fine-map correlation: Pearson correlation of the recovered fine displacement with the true
  ``fine_map`` sampled where the texel's point is nearest the true surface (3D, so the fit's
  sliding of the UV layout over the face does not count), on the wrinkle regions (the forehead
  lines and crow's feet envelopes: the true fine map's 2 mm blur of |fine| above 40 um) and over
  the face (the fit's evaluation region, ``fit.accuracy.face_vertices``, where the synthetic
  detail layers' face weight is above 0.5);
- normal error: mean angle between the surface normal and the true surface's (interpolated
  vertex normals, as rendered) at the nearest point, with the fine band (the fitted surface's
  normal tilted by the fine band's gradient) and without it (the fitted surface alone);
- p95 surface error: 95th percentile of the distance of the texel's point (with / without the
  fine band along the normal) to the true surface, mm;
- nmap var: the exported normal map's variance (x and y, x 1e4) over the wrinkle regions with the
  fine band (today's: the fit's 256-texel displacement alone), skin atlas 2048;
- the split-half reliability: the correlation of the fine bands solved from each half of the
  views and the scale it gives the band (``SolveSettings.split_half``), printed per session;
- the stage's time (wall, this machine; shared, so rough: with ``--repeats N`` the fastest of N
  runs; every run's wall and CPU time and the load average are printed beside it);
- with ``--mid-mm MM`` the stage also solves the mid band (``SolveSettings.mid_mm``): the normal
  error and p95 with fine + mid (what the texture stage exports) are printed beside the fine band's,
  and the last line's normal error is the exported one's;
- mid-band ceiling: the normal error of the fitted surface corrected by the true depth error
  (closest-point distance along the fitted normal) band-passed between 3 mm and 12 / 25 mm and
  above 1 mm, plus the recovered fine band: what a perfect mid band of that width could give.

The last line sums up the clean rung at the largest size.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np


def make_session(work: Path, seed: int, views: int, size: tuple[int, int], rung: str, preset: str) -> Path:
    from mvrecon.config import pipeline_config
    from mvrecon.pipeline import run_pipeline
    from mvrecon.synth import SynthConfig
    from mvrecon.synth import make_session as synth
    from mvrecon.synth.realism import Realism

    root = work / f"seed{seed}_{views}v_{size[0]}x{size[1]}_{rung}"
    if not (root / "session.json").is_file():
        t0 = time.perf_counter()
        synth(root, SynthConfig(seed=seed, cameras=views, width=size[0], height=size[1], board=False,
                                realism=Realism.parse(rung)), overwrite=True)
        print(f"  (rendered {root.name} in {time.perf_counter() - t0:.1f} s)", flush=True)
    t0 = time.perf_counter()
    res = run_pipeline(root, pipeline_config(preset), stop="fit", report=False)
    if any(o.status == "done" for o in res.stages):
        print(f"  (cues and fit of {root.name} in {time.perf_counter() - t0:.1f} s)", flush=True)
    return root


def truth_fit_copy(root: Path, model) -> Path:
    """A copy of the session (photos, truth) whose fit is made of its truth (:mod:`mvrecon.synth.truthfit`)."""
    import shutil

    from mvrecon.synth.truthfit import write_truth_fit

    dest = root.parent / f"{root.name}_truthfit"
    if not (dest / "fit" / "params.npz").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(root, dest, ignore=shutil.ignore_patterns("fit", "detail", "texture", "export", "evaluate",
                                                                  "cues", "logs", "*.stale"))
        write_truth_fit(dest, model)
    return dest


def true_skin(root: Path, model, frame: int = 0):
    """The true detailed skin of ``frame`` (world vertices, faces, UVs, UV faces) and the mesh
    without the fine layer (same topology), as the synthetic renderer built them."""
    from mvrecon.synth import head as H
    from mvrecon.synth import load_ground_truth

    gt = load_ground_truth(root)
    z = np.load(root / "gt" / "gt.npz")
    offset = z["head_offset"].astype(np.float64) if "head_offset" in z.files else None
    topo = H.SkinTopology.of(model)
    maps = H.DetailMaps(mid=gt.mid_map, fine=gt.fine_map)
    geo = H.build_geometry(model, topo, maps, gt.id_coeffs, gt.exp_coeffs[frame], gt.subdivision, offset=offset)
    flat = H.build_geometry(model, topo, H.DetailMaps(mid=gt.mid_map, fine=np.zeros_like(gt.fine_map)), gt.id_coeffs,
                            gt.exp_coeffs[frame], gt.subdivision, offset=offset)
    M = gt.head_to_world[frame]
    return (H.transform(geo.skin.verts, M), geo.skin.faces, geo.skin.uvs, geo.skin.uv_faces,
            H.transform(flat.skin.verts, M), gt)


def closest(verts, faces, points):
    """Nearest points on a mesh: (points (P, 3), triangle ids (P,), barycentrics (P, 3))."""
    from mvrecon.render.raycast import MeshQuery

    cp = MeshQuery(verts, faces).closest(points)
    return cp.points, cp.triangles, cp.barycentric


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-30))


def angle_deg(n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.einsum("mc,mc->m", n1, n2), -1, 1)))


def measure(root: Path, model, maps=None) -> dict:
    from scipy.ndimage import gaussian_filter

    from mvrecon.detail import face_grid, load_detail, perturbed_normals, surface_texels
    from mvrecon.fit.result import load_fit
    from mvrecon.geometry import vertex_normals
    from mvrecon.synth import meshops as mo

    head = load_fit(root / "fit", model)
    maps = load_detail(root / "detail") if maps is None else maps
    R = maps.size
    grid = face_grid(head, R)
    surf = surface_texels(head, grid, 0)
    mask = grid.mask
    fine = maps.fine[0]
    tv, tf, tuv, tuvf, _, gt = true_skin(root, model, 0)
    tn = vertex_normals(tv, tf)
    # the face weight and the wrinkle envelope, per texel of the fitted grid
    from mvrecon.fit.accuracy import face_vertices

    corners = model.triangles[grid.tri_ids]
    wface = grid.raster.interpolate(gt.face_weight[:, None].astype(np.float64), corners)[:, 0]
    # the fit's own evaluation region (every part, forehead included; not the sides and neck,
    # which no camera pins down) where the detail layers are applied
    inner = grid.raster.interpolate(face_vertices(model)[:, None].astype(np.float64), corners)[:, 0] > 0.5
    Rf = gt.fine_map.shape[0]
    env = gaussian_filter(np.abs(gt.fine_map).astype(np.float64), 2.0 / 0.2 * Rf / 1024)   # ~2 mm
    out = {}
    variants = [("with", fine), ("without", np.zeros_like(fine))]
    if maps.mid is not None:
        variants.append(("mid+fine", fine + maps.mid[0]))
    for name, h in variants:
        hm = h[mask].astype(np.float64)
        P = surf.points + hm[:, None] * surf.normals
        n = perturbed_normals(surf, mask, h) if name != "without" else surf.normals
        q, tri, bary = closest(tv, tf, P)
        nt = np.einsum("pk,pkc->pc", bary, tn[tf[tri]])
        nt /= np.linalg.norm(nt, axis=1, keepdims=True)
        dist = np.linalg.norm(P - q, axis=1) * 1e3
        uv = np.einsum("pk,pkc->pc", bary, tuv[tuvf[tri]])
        on_tile = uv[:, 0] < 1.0
        tfine = np.where(on_tile, mo.sample_map(gt.fine_map, np.clip(uv, 0, 1))[:, 0], 0.0)
        tenv = np.where(on_tile, mo.sample_map(env, np.clip(uv, 0, 1))[:, 0], 0.0)
        face = (wface > 0.5) & inner
        wr = face & (tenv > 40e-6)
        out[name] = {"normal_face": float(angle_deg(n, nt)[face].mean()), "normal_wrinkle": float(angle_deg(n, nt)[wr].mean()),
                     "p95": float(np.percentile(dist[face], 95)), "mean": float(dist[face].mean())}
        if name == "with":
            out["corr_wrinkle"] = corr(hm[wr], tfine[wr])
            out["corr_face"] = corr(hm[face], tfine[face])
            out["n_wrinkle"] = int(wr.sum())
            # the ceiling: the true fine map carried along the fitted surface, same measure
            # (the true mesh carries the fine map at its ~0.8 mm vertex spacing: pores average out)
            tsmooth = mo.sample_map(gaussian_filter(gt.fine_map.astype(np.float64), 0.5 / 0.2 * Rf / 1024),
                                    np.clip(uv, 0, 1))[:, 0]
            ht = np.zeros_like(fine)
            ht[mask] = np.where(on_tile, tsmooth, 0.0)
            ang_or = angle_deg(perturbed_normals(surf, mask, ht), nt)
            out["normal_face_oracle"] = float(ang_or[face].mean())
            out["normal_wrinkle_oracle"] = float(ang_or[wr].mean())
        if name == "without":
            out["mid_ceiling"] = mid_ceiling(surf, mask, np.einsum("mc,mc->m", q - P, surf.normals), fine, nt, face,
                                             surf.texel_mm(R))
    out["size"] = R
    out["normal_map_variance_ratio"] = normal_map_variance_ratio(head, fine, wr, mask)
    return out


def mid_ceiling(surf, mask: np.ndarray, depth: np.ndarray, fine: np.ndarray, nt: np.ndarray, face: np.ndarray,
                texel_mm: float) -> dict:
    """Face normal error (deg) of the fitted surface corrected by the true depth error ``depth`` (M,)
    metres band-passed (Gaussian sigmas in mm, lo-hi; hi None: everything above lo), with the
    recovered ``fine`` band on top: the ceiling of a mid band of that width."""
    from mvrecon.detail.grid import perturbed_normals, scatter
    from mvrecon.detail.solve import _nblur

    D = scatter(mask, depth.astype(np.float32))
    W = mask.astype(np.float32)
    out = {}
    for lo, hi in ((3.0, 12.0), (3.0, 25.0), (1.0, None)):
        band = _nblur(D, W, lo / texel_mm) - (_nblur(D, W, hi / texel_mm) if hi else 0.0)
        n = perturbed_normals(surf, mask, band * mask + fine)
        out[f"{lo:g}-{hi:g}" if hi else f"{lo:g}-"] = float(angle_deg(n, nt)[face].mean())
    return out


def mid_band_signal(root: Path, model, lo: float = 3.0, hi: float = 12.0) -> list[tuple[str, float, float, float]]:
    """Per view of frame 0, on the trusted face texels (the stage's albedo test above 0.95): the RMS
    of its de-lit log shading band-passed between ``lo`` and ``hi`` mm (what a mid-band solve must
    explain), the RMS of the shading the true depth error's same band would make (-kappa . grad),
    and their correlation. (key, data RMS, geometry RMS, correlation)."""
    from mvrecon.detail import PRESETS, albedo_trust, face_grid, observe_views, surface_texels
    from mvrecon.detail.grid import scatter, uv_gradient
    from mvrecon.detail.solve import _nblur
    from mvrecon.facemodel.model import RENDER_SUBMESHES
    from mvrecon.fit.accuracy import face_vertices
    from mvrecon.fit.result import load_fit
    from mvrecon.session import load_session
    from mvrecon.texture.bake import OPAQUE_INNER
    from mvrecon.texture.stage import bake_views

    cfg = PRESETS["default"]
    head = load_fit(root / "fit", model)
    R = load_detail_size(root)
    grid = face_grid(head, R)
    mask = grid.mask
    surf = surface_texels(head, grid, 0)
    views = [v for v in bake_views(load_session(root), head) if v.group == 0]
    occ = model.render_triangles(tuple(RENDER_SUBMESHES) + OPAQUE_INNER)
    obs = observe_views(surf, views, head.world(0, detail=True), occ, cfg.min_cos, cfg.angle_power, cfg.feather_px)
    texel_mm = surf.texel_mm(R)
    tv, tf, _, _, _, gt = true_skin(root, model, 0)
    q, _, _ = closest(tv, tf, surf.points)
    D = scatter(mask, np.einsum("mc,mc->m", q - surf.points, surf.normals).astype(np.float32))
    ones = mask.astype(np.float32)
    Db = (_nblur(D, ones, lo / texel_mm) - _nblur(D, ones, hi / texel_mm)) * mask
    du, dv = uv_gradient(Db)
    W = sum(scatter(mask, v.weight) for v in obs)
    alb = sum(scatter(mask, v.weight)[..., None] * scatter(mask, v.delit) for v in obs) / np.maximum(W, 1e-12)[..., None]
    trust = albedo_trust(alb, W, texel_mm, cfg.solve)
    corners = model.triangles[grid.tri_ids]
    wface = grid.raster.interpolate(gt.face_weight[:, None].astype(np.float64), corners)[:, 0]
    inner = grid.raster.interpolate(face_vertices(model)[:, None].astype(np.float64), corners)[:, 0] > 0.5
    face = (scatter(mask, ((wface > 0.5) & inner).astype(np.float32)) > 0) & (trust > 0.95)
    out = []
    for v in obs:
        w, s, k = scatter(mask, v.weight), scatter(mask, v.log_ratio), scatter(mask, v.kappa)
        pred = -(k[..., 0] * du + k[..., 1] * dv)
        sb = _nblur(s, w, lo / texel_mm) - _nblur(s, w, hi / texel_mm)
        m = face & (w > 0.3)
        out.append((v.key, float(sb[m].std()), float(pred[m].std()), corr(sb[m], pred[m])))
    return out


def load_detail_size(root: Path) -> int:
    from mvrecon.detail import load_detail

    return load_detail(root / "detail").size


def normal_map_variance_ratio(head, fine: np.ndarray, region_texels: np.ndarray, mask: np.ndarray, S: int = 2048) -> float:
    """The exported normal map's variance (x and y components) over the wrinkle regions with the
    fine band and today's (the fit's displacement alone), on a skin atlas of S."""
    import cv2

    from mvrecon.texture.bake import _displacement, add_fine_band, normal_map_from_displacement
    from mvrecon.texture.layout import corner_uvs, material, material_triangles
    from mvrecon.texture.uvraster import rasterize_uv

    model = head.model
    skin = material("skin")
    tri_ids = material_triangles(model, skin)
    uv_c = corner_uvs(model, tri_ids, skin)
    raster = rasterize_uv(uv_c.reshape(-1, 2), np.arange(3 * len(tri_ids)).reshape(-1, 3), S, 2 * S)
    neutral = head.neutral_model_space() * head.scale
    disp = _displacement(head, raster, tri_ids, model.uvs[model.uv_triangles[tri_ids]])
    region = np.zeros(mask.shape, np.uint8)
    region[mask] = region_texels
    region = cv2.resize(region, (S, S), interpolation=cv2.INTER_NEAREST).astype(bool)
    var = []
    for d in (disp, add_fine_band(disp, raster, tri_ids, model, fine)):
        n = normal_map_from_displacement(d, raster, neutral, model.triangles[tri_ids], uv_c)[:, :S][region] * 2 - 1
        var.append(float(n[:, :2].var(0).sum()))
    return var[1], var[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1024x768,2048x1536")
    ap.add_argument("--rungs", default="clean")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mvrecon-bench-detail"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mid-mm", type=float, default=None,
                    help="Also solve the mid band up to this Gaussian sigma (mm) (SolveSettings.mid_mm).")
    ap.add_argument("--repeats", type=int, default=1,
                    help="Run the stage this many times; its time is the fastest run's (the machine is shared).")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="Profile the stage (cProfile) and print its N most costly functions (own time); "
                         "the stage's time then includes the profiler's overhead.")
    ap.add_argument("--no-split-half", action="store_true",
                    help="Leave the fine band at its solved scale (SolveSettings.split_half off), as before the "
                         "thirteenth session.")
    ap.add_argument("--truth-fit", action="store_true",
                    help="Also run the stage on a copy of each session whose fit is its truth (no fine layer).")
    args = ap.parse_args()
    from mvrecon import threads
    from mvrecon.detail import PRESETS
    from mvrecon.detail import run as run_detail
    from mvrecon.facemodel import load_model
    from mvrecon.session import load_session

    # as the command line does: the stage's ray casts would otherwise set every library to all cores
    threads.configure(args.threads)
    model = load_model("ict")
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    for rung in args.rungs.split(","):
        for size in sizes:
            root = make_session(args.work, args.seed, args.views, size, rung, args.preset)
            kinds = [("fitted", root)]
            if args.truth_fit:
                kinds.append(("truth", truth_fit_copy(root, model)))
            for kind, r in kinds:
                cfg = PRESETS[args.preset]
                if args.mid_mm is not None:
                    cfg = dataclasses.replace(cfg, solve=dataclasses.replace(cfg.solve, mid_mm=args.mid_mm))
                if args.no_split_half:
                    cfg = dataclasses.replace(cfg, solve=dataclasses.replace(cfg.solve, split_half=False))
                walls, cpus = [], []
                for _ in range(max(1, args.repeats)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    if args.profile:
                        import cProfile
                        import pstats

                        prof = cProfile.Profile()
                        res = prof.runcall(run_detail, cfg, load_session(r))
                        walls.append(time.perf_counter() - t0)
                        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
                    else:
                        res = run_detail(cfg, load_session(r))
                        walls.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                secs = min(walls)
                m = measure(r, model)
                if args.mid_mm is not None:
                    m["mid_signal"] = mid_band_signal(r, model, hi=args.mid_mm)
                rows.append((rung, kind, size, secs, m, res.summary))
                print(f"  {r.name}: the stage took " + ", ".join(f"{w:.1f}" for w in walls) + " s wall ("
                      + ", ".join(f"{c:.1f}" for c in cpus) + f" s CPU), load average {os.getloadavg()[0]:.1f} after",
                      flush=True)
                print(f"  {r.name}: {m}", flush=True)
                for g, info in res.summary["groups"].items():
                    print(f"  {r.name} {g}: split-half correlation of the fine band {info.get('halves_correlation')}, "
                          f"its reliability (the band's scale) {info.get('reliability')}", flush=True)
    hdr = (f"{'rung':<6} {'fit':<6} {'photos':>10} {'grid':>5} {'corr wrinkle':>12} {'corr face':>9} {'normal face (deg)':>18} "
           f"{'normal wrinkle':>15} {'oracle':>13} {'p95 mm':>13} {'nmap var x1e4':>14} {'time s':>6}")
    print(hdr)
    print("-" * len(hdr))
    for rung, kind, size, secs, m, _ in rows:
        w, wo = m["with"], m["without"]
        print(f"{rung:<6} {kind:<6} {size[0]:>5}x{size[1]:<4} {m['size']:>5} {m['corr_wrinkle']:>12.2f} {m['corr_face']:>9.2f} "
              f"{w['normal_face']:>7.2f} ({wo['normal_face']:>5.2f}) {w['normal_wrinkle']:>6.2f} ({wo['normal_wrinkle']:>5.2f}) "
              f"{m['normal_face_oracle']:>6.2f}/{m['normal_wrinkle_oracle']:<6.2f} {w['p95']:>5.3f} ({wo['p95']:.3f}) {1e4 * m['normal_map_variance_ratio'][0]:>6.1f} ({1e4 * m['normal_map_variance_ratio'][1]:.3f}) {secs:>6.1f}")
    print("normal (deg), p95 (mm): with the detail stage's fine band (without it); oracle: the true fine map "
          "(at the true mesh's resolution) on the fitted surface; fit 'truth': the session's true mid layer, "
          "identity, pose and light in place of the fit")
    mids = [(r, k, sz, m["mid+fine"]) for r, k, sz, _, m, _ in rows if "mid+fine" in m]
    if mids:
        print("with the mid band as well (fine + mid, as exported): " + "; ".join(
            f"{r} {k} {sz[0]}x{sz[1]}: normal face {x['normal_face']:.2f}, wrinkle {x['normal_wrinkle']:.2f}, "
            f"p95 {x['p95']:.3f}" for r, k, sz, x in mids))
    print("mid-band ceiling, normal face (deg) with the true depth error's band (Gaussian sigmas, mm) and the "
          "recovered fine band: " + "; ".join(
              f"{r} {k} {sz[0]}x{sz[1]}: " + ", ".join(f"{b} {v:.2f}" for b, v in m["mid_ceiling"].items())
              for r, k, sz, _, m, _ in rows))
    for r, k, sz, _, m, _ in rows:
        if "mid_signal" in m:
            print(f"mid band 3-{args.mid_mm:g} mm on trusted face skin, {r} {k} {sz[0]}x{sz[1]}, per view: log-shading "
                  "RMS of the data / of the true depth error's shading (correlation): " + ", ".join(
                      f"{key} {a:.3f}/{b:.3f} ({c:.2f})" for key, a, b, c in m["mid_signal"]))
    clean = [r for r in rows if r[0] == "clean" and r[1] == "fitted"]
    last = max(clean or rows, key=lambda r: r[2][0] * r[2][1])
    m = last[4]
    exported = m.get("mid+fine", m["with"])
    print(f"detail: fine-map correlation {m['corr_wrinkle']:.2f}, normal error {exported['normal_face']:.1f} deg "
          f"(without {m['without']['normal_face']:.1f} deg), {last[3]:.0f} s at {last[2][0]}x{last[2][1]}")


if __name__ == "__main__":
    sys.exit(main())
