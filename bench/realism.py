"""The realism ladder: how the fit fares as synthetic sessions gain what real captures have.

    python bench/realism.py [--seeds 7 8] [--scan PATH|none] [--views 2 4] [--rungs clean,head,...,full,full-skin]
                            [--presets fast,default,best] [--ablations] [--true-cameras] [--key-light preset|off|specular] [--size 1024x768]
                            [--threads 2] [--work DIR]

Subjects: the random heads of ``--seeds`` and the scanned head (``--scan``, default the Lee
Perry-Smith scan beside the repository: "Infinite, 3D Head Scan" by Lee Perry-Smith, CC BY 3.0,
based on a work at triplegangers.com). Rungs: ``clean`` (today's sessions), each factor of
:mod:`mvrecon.synth.realism` alone, and ``full`` (all of them). Each session goes through the
real cues stage and then the fit (``bench/fit.py``'s ``fit_and_measure``), with beside it the
landmark-only fit (same preset without PRDL, photometric, deformation and displacement) and the
model's mean face aligned by its landmarks (a rigid fit of the mean face's inner landmarks to the
landmarks triangulated from the views, the fit's own initialisation without identity or
expression). The error is the distance from each face vertex to the true surface in the rig's
frame, no alignment (the scan is in the rig's frame), in mm: mean / median / p95.

With ``--presets``, the full rung is also fitted with each preset (the issue's symptom on real
photos: the slowest preset the worst). The last line sums up the full rung at 4 views (mean over
subjects). Wall times on this shared 2-core machine are rough.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fit import ablations, fit_and_measure, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LPS = REPO.parent / "shared" / "models" / "scans" / "lee-perry-smith" / "LeePerrySmith.glb"


def make_session(work: Path, subject, cams: int, size: tuple[int, int], rung: str) -> Path:
    from mvrecon.cues import PRESETS, run as run_cues
    from mvrecon.session import load_session
    from mvrecon.synth import SynthConfig, make_session as synth
    from mvrecon.synth.realism import Realism

    seed, mesh = (7, str(subject)) if isinstance(subject, Path) else (int(subject), None)
    tag = "scan" if mesh else f"seed{seed}"
    root = work / f"{tag}_{cams}v_{size[0]}x{size[1]}_{rung}"
    if not (root / "session.json").is_file():
        t0 = time.perf_counter()
        synth(root, SynthConfig(seed=seed, cameras=cams, width=size[0], height=size[1], board=False,
                                realism=Realism.parse(rung), head_mesh=mesh), overwrite=True)
        print(f"  (rendered {root.name} in {time.perf_counter() - t0:.1f} s)", flush=True)
    res = run_cues(PRESETS["default"], load_session(root))
    if res.no_face:
        print(f"  note: no face found in {', '.join(res.no_face)} of {root.name}", file=sys.stderr)
    return root


def mean_face_error(root: Path, model, cfg) -> dict:
    """The model's mean face (no identity, no expression) rigidly aligned to the landmarks the
    views triangulate (as the fit's initialisation does), against the true surface."""
    from mvrecon.fit.accuracy import rigid_surface_error, surface_error
    from mvrecon.fit.data import prepare_views
    from mvrecon.fit.init import INNER, triangulate_landmarks
    from mvrecon.geometry import umeyama
    from mvrecon.fit.stage import load_fit_views
    from mvrecon.session import load_session

    cues, cams, _ = load_fit_views(load_session(root))
    batch = prepare_views(cues, cams, size=cfg.crop_size, anchor_n=cfg.anchor_grid, mask_points=cfg.mask_points)
    P = (batch.K @ batch.world_to_cam[:, :3, :]).double().numpy()
    frames = np.array(batch.frames)
    sel = frames == frames[0]
    tri = triangulate_landmarks(P[sel], batch.lm68.double().numpy()[sel], batch.lm_conf.double().numpy()[sel],
                                threshold_px=0.06 * batch.size)
    use = np.isfinite(tri.points).all(1)
    use[: INNER[0]] = False                                   # the fit's own rule: not the jaw line
    mean = model.mean.astype(np.float64)
    S = umeyama(mean[model.landmarks68][use], tri.points[use], with_scale=False)
    s, R, t = S.scale, S.rotation, S.translation
    world = s * mean @ R.T + t
    gt = np.load(root / "gt" / "gt.npz")
    e = surface_error(world, gt["verts_detail"][0], model)
    rigid = rigid_surface_error(world, gt["verts_detail"][0], model)[0].mean_mm
    return {"mean": e.mean_mm, "median": e.median_mm, "p95": e.p95_mm, "rigid": rigid}


def gauge_floor(root: Path, model) -> float:
    """The unaligned error (mean mm) of the true surface itself placed where the fit's camera
    correction must put it: the correction is zero-mean over the cameras (the rig as a whole stays
    where its calibration put it; a drift all cameras share cannot be seen in the photos), so the
    drifted rig's mean motion (each camera's rigid motion from the photos' rig to the shipped one,
    about the head's centre, averaged over the cameras the fit uses) moves the head by that much.
    No fit can do better unaligned; 0 on a session without the calibration factor."""
    from scipy.spatial.transform import Rotation

    from mvrecon.fit.accuracy import surface_error
    from mvrecon.fit.stage import load_fit_views
    from mvrecon.session import load_session

    gt = np.load(root / "gt" / "gt.npz")
    if "shipped_world_to_cam" not in gt.files:
        return 0.0
    _, cams, _ = load_fit_views(load_session(root), model)
    used = {c.name for c in cams}
    truth = gt["verts_detail"][0].astype(np.float64)
    c = truth.mean(0)
    motions = []
    for name, shipped, rendered in zip(gt["cameras"], gt["shipped_world_to_cam"], gt["render_world_to_cam"]):
        if str(name) not in used:
            continue
        A = np.linalg.inv(shipped) @ rendered  # a true point -> the point the shipped camera sees alike
        motions.append(np.r_[Rotation.from_matrix(A[:3, :3]).as_rotvec(), A[:3, :3] @ c + A[:3, 3] - c])
    m = np.mean(motions, 0)
    moved = (truth - c) @ Rotation.from_rotvec(m[:3]).as_matrix().T + c + m[3:]
    return surface_error(moved, truth, model).mean_mm


def main() -> None:
    from mvrecon.synth.realism import FACTORS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8])
    ap.add_argument("--scan", default=str(LPS), help="head mesh of the scanned subject, or 'none'")
    ap.add_argument("--views", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--rungs", default=",".join(("clean",) + FACTORS + ("full",)))
    ap.add_argument("--presets", default="", help="comma list of presets fitted on the full rung (e.g. fast,default,best)")
    ap.add_argument("--ablations", action="store_true",
                    help="also fit each rung with the ablation ladder of bench/fit.py (landmarks only, + PRDL, "
                         "+ photometric, + deformation map, full, full without PRDL, full + cross-view consistency and camera "
                         "correction): which term helps or hurts")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--legacy", action="store_true",
                    help="fit with the settings from before the fit was made to hold on real heads (mvrecon.fit.config.legacy)")
    ap.add_argument("--key-light", choices=("preset", "off", "specular"), default="preset",
                    help="the key light of the fit's image model (mvrecon.fit.config.with_key_light, on in every "
                         "preset): as the preset has it, off (mvrecon.fit.config.without_key_light), or its "
                         "specular lobe only (no cast shadows)")
    ap.add_argument("--true-cameras", action="store_true",
                    help="fit with the cameras the photos were rendered with, not the session's (drifted) rig")
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mvrecon-bench-realism"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import logging

    logging.basicConfig(level=logging.ERROR)
    from mvrecon.facemodel import load_model
    from mvrecon.fit.config import legacy, preset, with_key_light, without_key_light

    size = tuple(int(x) for x in a.size.lower().split("x"))
    model = load_model("ict")
    base_get = legacy if a.legacy else preset

    def get(name: str):
        c = base_get(name)
        if a.key_light == "off":
            c = without_key_light(c)
        elif a.key_light == "specular":
            c = dataclasses.replace(with_key_light(c), key_shadows=False)
        return c

    cfg = get(a.preset)
    lm_only = dict(ablations(cfg))["landmarks only"]
    subjects: list = list(a.seeds)
    if a.scan != "none":
        if Path(a.scan).is_file():
            subjects.append(Path(a.scan))
        else:
            print(f"note: no scan at {a.scan}; the scanned subject is left out", file=sys.stderr)
    rungs = [r for r in a.rungs.split(",") if r]
    a.work.mkdir(parents=True, exist_ok=True)
    print(f"realism ladder: preset {a.preset}{' (legacy settings)' if a.legacy else ''}"
          f"{', true (render) cameras' if a.true_cameras else ''}"
          f"{', key light ' + a.key_light if a.key_light != 'preset' else ''}, {size[0]}x{size[1]} px, subjects "
          f"{', '.join('scan' if isinstance(s, Path) else f'seed {s}' for s in subjects)}, torch threads {a.threads}; "
          "errors: face vertices -> true surface in the rig's frame (no alignment), mm")
    if any(isinstance(s, Path) for s in subjects):
        print("scanned head: \"Infinite, 3D Head Scan\" by Lee Perry-Smith, CC BY 3.0 (triplegangers.com), "
              "geometry registered with the face model" if Path(a.scan) == LPS else f"scanned head: {a.scan}")
    full4: dict[str, list[float]] = {"fit": [], "lm": [], "mean": []}
    head = f"{'subject':<8} {'views':>5} {'rung':<10} {'fit mean':>8} {'median':>7} {'p95':>6}  " \
           f"{'lm-only mean':>12} {'median':>7} {'p95':>6}  {'mean face':>9} {'median':>7} {'p95':>6}  {'fit s':>6}  " \
           f"{'fold':>6}  verdict (reverted stages)"
    print("\n" + head + "\n" + "-" * len(head), flush=True)
    presets_rows = []
    ablation_rows = []
    for n in a.views:
        for subj in subjects:
            name = "scan" if isinstance(subj, Path) else f"seed {subj}"
            for rung in rungs:
                root = make_session(a.work, subj, n, size, rung)
                f = fit_and_measure(root, cfg, model, true_cameras=a.true_cameras)
                lo = fit_and_measure(root, lm_only, model, true_cameras=a.true_cameras)
                mf = mean_face_error(root, model, cfg)
                verdict = []
                if f["mean"] >= lo["mean"]:
                    verdict.append("fit >= landmark-only")
                if f["mean"] >= mf["mean"]:
                    verdict.append("fit >= mean face")
                print(f"{name:<8} {n:>5} {rung:<10} {f['mean']:>8.3f} {f['median']:>7.3f} {f['p95']:>6.3f}  "
                      f"{lo['mean']:>12.3f} {lo['median']:>7.3f} {lo['p95']:>6.3f}  {mf['mean']:>9.3f} "
                      f"{mf['median']:>7.3f} {mf['p95']:>6.3f}  {f['seconds']:>6.1f}  {f['fold']:>6.2f}  "
                      f"{'; '.join(verdict) or 'ok'}{' (' + ', '.join(f['reverted']) + ')' if f['reverted'] else ''}",
                      flush=True)
                if rung == "full" and n == 4:
                    full4["fit"].append(f["mean"])
                    full4["lm"].append(lo["mean"])
                    full4["mean"].append(mf["mean"])
                if a.ablations:
                    for label, acfg in ablations(cfg):
                        r = lo if label == "landmarks only" else f if label == "+ displacement (full)" else \
                            fit_and_measure(root, acfg, model, true_cameras=a.true_cameras)
                        ablation_rows.append([name, n, rung, label.strip(), f"{r['mean']:.3f}", f"{r['median']:.3f}",
                                              f"{r['p95']:.3f}", ", ".join(r["reverted"]) or "-"])
                if rung == "full" and a.presets:
                    row = [name, n]
                    for p in a.presets.split(","):
                        r = f if p == a.preset else fit_and_measure(root, get(p), model, true_cameras=a.true_cameras)
                        row.append(f"{r['mean']:.3f} ({r['seconds']:.0f} s)")
                    presets_rows.append(row)
    if ablation_rows:
        table("Ablations (mean / median / p95 mm; stages the check reverted)",
              ["subject", "views", "rung", "fit", "mean", "median", "p95", "reverted"], ablation_rows)
    if presets_rows:
        table("Presets on the full rung (mean mm, fit s)", ["subject", "views"] + a.presets.split(","), presets_rows)
    if full4["fit"]:
        print(f"realism full, 4 views: fit {np.mean(full4['fit']):.3f} mm, landmark-only {np.mean(full4['lm']):.3f} mm, "
              f"mean face {np.mean(full4['mean']):.3f} mm")


if __name__ == "__main__":
    main()
