"""Rig calibration accuracy on synthetic rigs with known cameras.

ChArUco: rigs of 2, 4 and 8 cameras on an arc ~1 m from the head position (50 mm lens on a
36 mm sensor at 1600x1200, f = 2222 px, real radial + tangential distortion), a 10x7 board of
40 mm squares moved and tilted through the working volume, every shot rendered exactly (per-ray
distortion, supersampling, blur, noise) in each camera that sees it. Errors are measured in
camera 0's frame (both rigs expressed relative to their own camera 0), so no alignment is
fitted and the metric scale is tested too; camera 0 itself is therefore exact by construction
and left out of the maxima.

SfM: 4 cameras photographing textured planes; errors after a similarity alignment of camera
centres (SfM has no scale of its own; here it comes from --scale-distance).
Refine: 5 cameras, one moved by 5 mm / 0.5 deg after calibration; error of the refined camera.

Usage: python bench/calibration.py [--cams 2 4 8] [--quick]   (prints tables, no pass/fail)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mvrecon.calibrate.charuco import calibrate_from_detections, CharucoConfig, detect_all, find_shots
from mvrecon.calibrate.synthetic import arc_rig, board_poses, render_scene, textured_scene, write_charuco_shots
from mvrecon.cameras import Board, invert_rigid, rotation_angle_deg, save_rig
from mvrecon.geometry import axis_angle_to_matrix, umeyama
from mvrecon.io import write_image


def charuco_case(n: int, size: tuple[int, int], n_shots: int, work: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    board = Board(10, 7, 0.04, 0.03)
    truth = arc_rig(n, *size, rng=rng, board=board)
    poses = board_poses(board, truth, n_shots, rng, spread=0.22)
    t0 = time.perf_counter()
    seen = write_charuco_shots(work / "shots", board, truth, poses, rng)
    t_render = time.perf_counter() - t0
    nominal = truth.with_cameras([c.replace(world_to_cam=np.eye(4), dist=np.zeros(5)) for c in truth.cameras])
    t0 = time.perf_counter()
    dets = detect_all(board, nominal, find_shots(work / "shots", nominal))
    t_detect = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = calibrate_from_detections(nominal, board, dets, CharucoConfig(), work / "shots")
    t_cal = time.perf_counter() - t0
    T0, E0 = truth.cameras[0].world_to_cam, res.rig.cameras[0].world_to_cam
    dc, dr, df, dp = [], [], [], []
    for t, e in zip(truth.cameras, res.rig.cameras):
        rt, re = t.world_to_cam @ invert_rigid(T0), e.world_to_cam @ invert_rigid(E0)
        dc.append(1000 * np.linalg.norm(invert_rigid(rt)[:3, 3] - invert_rigid(re)[:3, 3]))
        dr.append(rotation_angle_deg(rt[:3, :3], re[:3, :3]))
        df.append(100 * abs(e.K[0, 0] / t.K[0, 0] - 1))
        dp.append(np.abs(e.K[:2, 2] - t.K[:2, 2]).max())
    rest = slice(1, None) if n > 1 else slice(0, None)
    return {
        "cams": n, "shots": len(seen), "images": sum(len(v) for v in seen.values()),
        "corners": sum(c.n_corners for c in res.cameras), "rms": res.rms_px,
        "max_px": max(c.max_px for c in res.cameras), "centre_mm": max(dc[rest]), "rot_deg": max(dr[rest]),
        "focal_pct": max(df), "pp_px": max(dp), "t_render": t_render, "t_detect": t_detect, "t_cal": t_cal,
        "warnings": sum(len(c.warnings) for c in res.cameras),
    }


def sfm_case(size: tuple[int, int], work: Path, seed: int) -> dict:
    from mvrecon.calibrate.sfm import SfmConfig, calibrate_sfm

    rng = np.random.default_rng(seed)
    truth = arc_rig(4, *size, rng=rng, span_deg=70)
    planes = textured_scene(rng)
    for c in truth.cameras:
        write_image(work / "sfm" / f"{c.name}.png", render_scene(c, planes, rng))
    a, b = truth.cameras[0], truth.cameras[-1]
    t0 = time.perf_counter()
    res = calibrate_sfm(truth, work / "sfm", SfmConfig(scale_distance=(a.name, b.name, float(np.linalg.norm(a.center - b.center)))))
    t = time.perf_counter() - t0
    Ct = np.array([c.center for c in truth.cameras])
    Ce = np.array([c.center for c in res.rig.cameras])
    fit = umeyama(Ce, Ct)
    s, R, tt = fit.scale, fit.rotation, fit.translation
    rot = max(rotation_angle_deg(e.R @ R.T, c.R) for c, e in zip(truth.cameras, res.rig.cameras))
    cen = max(1000 * np.linalg.norm(s * R @ e.center + tt - c.center) for c, e in zip(truth.cameras, res.rig.cameras))
    return {"rot_deg": rot, "centre_mm": cen, "points": res.n_points, "rms": res.rms_px, "t": t}


def refine_case(size: tuple[int, int], work: Path, seed: int) -> dict:
    from mvrecon.calibrate.refine import RefineConfig, refine_extrinsics
    from mvrecon.session import load_session, write_session_file

    rng = np.random.default_rng(seed)
    truth = arc_rig(5, *size, rng=rng, span_deg=60)
    planes = textured_scene(rng)
    imgs = {}
    for c in truth.cameras:
        write_image(work / "ref" / "images" / f"{c.name}.png", render_scene(c, planes, rng))
        imgs[c.name] = f"images/{c.name}.png"
    c = truth.cameras[2]
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    R = axis_angle_to_matrix(np.radians(0.5) * axis) @ c.R
    C = c.center + 0.005 * np.array([0.6, -0.4, 0.7]) / np.linalg.norm([0.6, -0.4, 0.7])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, -R @ C
    moved = truth.with_cameras([x if i != 2 else x.replace(world_to_cam=M) for i, x in enumerate(truth.cameras)])
    save_rig(moved, work / "ref" / "rig" / "rig.json")
    write_session_file(work / "ref", "rig", [{"name": "f0", "images": imgs}])
    t0 = time.perf_counter()
    res = refine_extrinsics(load_session(work / "ref"), RefineConfig())
    t = time.perf_counter() - t0
    e = res.rig.cameras[2]
    others = max(1000 * np.linalg.norm(x.center - y.center) for i, (x, y) in enumerate(zip(truth.cameras, res.rig.cameras)) if i != 2)
    return {"moved_mm": res.moves[2].shift_mm, "moved_deg": res.moves[2].rotation_deg,
            "err_mm": 1000 * np.linalg.norm(e.center - c.center), "err_deg": rotation_angle_deg(e.R, c.R),
            "others_mm": others, "rms": (res.rms_before_px, res.rms_after_px), "t": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cams", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--quick", action="store_true", help="640x480 images and fewer shots (a smoke run)")
    ap.add_argument("--skip-sfm", action="store_true")
    ap.add_argument("--skip-refine", action="store_true")
    args = ap.parse_args()
    size = (640, 480) if args.quick else (1600, 1200)
    work = Path(tempfile.mkdtemp(prefix="mvrecon-bench-calib-"))
    try:
        print(f"ChArUco calibration, {size[0]}x{size[1]}, 10x7 board of 40 mm squares; errors in camera 0's frame")
        print(f"{'cams':>4} {'shots':>5} {'imgs':>5} {'corners':>7} {'rms px':>7} {'max px':>7} {'centre mm':>9} "
              f"{'rot deg':>8} {'focal %':>8} {'pp px':>6} {'warn':>4} {'render s':>8} {'detect s':>8} {'calib s':>8}")
        for n in args.cams:
            shots = (10 if args.quick else 16) + (3 if args.quick else 4) * n
            r = charuco_case(n, size, shots, work / f"c{n}", seed=100 + n)
            print(f"{r['cams']:>4} {r['shots']:>5} {r['images']:>5} {r['corners']:>7} {r['rms']:>7.3f} {r['max_px']:>7.3f} "
                  f"{r['centre_mm']:>9.3f} {r['rot_deg']:>8.4f} {r['focal_pct']:>8.4f} {r['pp_px']:>6.2f} {r['warnings']:>4} "
                  f"{r['t_render']:>8.1f} {r['t_detect']:>8.1f} {r['t_cal']:>8.1f}", flush=True)
        print("targets: rms <= 0.3 px, centre <= 1 mm, rotation <= 0.05 deg, focal <= 0.2 %")
        if not args.skip_sfm:
            r = sfm_case(size, work, seed=7)
            print(f"\nSfM (4 cameras, textured planes, similarity-aligned): max rotation error {r['rot_deg']:.4f} deg, "
                  f"max centre error {r['centre_mm']:.2f} mm, {r['points']} points, RMS {r['rms']:.3f} px, {r['t']:.1f} s "
                  "(target: rotation <= 0.5 deg)")
        if not args.skip_refine:
            r = refine_case(size, work, seed=5)
            print(f"\nRefine (5 cameras, cam2 moved 5 mm / 0.5 deg): found {r['moved_mm']:.2f} mm / {r['moved_deg']:.3f} deg; "
                  f"error after refinement {r['err_mm']:.3f} mm / {r['err_deg']:.4f} deg (target <= 0.5 mm); "
                  f"other cameras within {r['others_mm']:.3f} mm; RMS {r['rms'][0]:.2f} -> {r['rms'][1]:.2f} px; {r['t']:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
