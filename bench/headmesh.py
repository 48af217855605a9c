"""The face model registered to a real head scan: residuals, folds, eyes, run time, and how far
the registered head is from anything the model can make.

Usage: python bench/headmesh.py [--mesh PATH] [--png OUT.png]     (prints a table)

Default mesh: the Lee Perry-Smith scan (../shared/models/scans/lee-perry-smith/, CC BY 3.0).
'Distance to the model's span' is the registered skin against the model's best least-squares
fit to it (vertex to vertex, the correspondence is the topology): identity modes plus a rigid
pose, then identity and all expression shapes (unbounded weights: the most the model can do).
That distance is what makes the registered head one the model did not make. ``--png`` writes
the registered head (front, 3/4) above the scan seen the same way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mvrecon.geometry import umeyama
from mvrecon.facemodel import load_model
from mvrecon.synth import headfit as hf
from mvrecon.synth import headmesh as hm
from mvrecon.synth.head import SkinTopology

LPS = Path(__file__).resolve().parents[1].parent / "shared/models/scans/lee-perry-smith/LeePerrySmith.glb"


def span_fit(model, target: np.ndarray, vids: np.ndarray, with_expressions: bool, iters: int = 8) -> np.ndarray:
    """The model's closest shape (N, 3) to ``target`` (N, 3) on the vertices ``vids``: linear
    least squares on the coefficients (a 1e-6 ridge), alternated with a rigid pose (Kabsch)."""
    B = model.id_basis
    if with_expressions:
        B = np.concatenate([B, model.exp_basis], 0)
    A = B[:, vids].reshape(len(B), -1).astype(np.float64).T                 # (3M, K)
    mean = model.mean[vids].astype(np.float64)
    T = umeyama(mean, target[vids], with_scale=False)
    for _ in range(iters):
        local = T.inverse().apply(target[vids])
        coef = np.linalg.solve(A.T @ A + 1e-6 * np.eye(A.shape[1]), A.T @ (local - mean).ravel())
        shape = mean + (A @ coef).reshape(-1, 3)
        T = umeyama(shape, target[vids], with_scale=False)
    full = model.mean.astype(np.float64) + np.tensordot(coef, B, axes=1)
    return T.apply(full)


def render_png(model, head: hm.RegisteredHead, scan: hm.HeadScan, out: Path, size: int = 640) -> None:
    """Registered head (skin, eyeballs with irises) front and 3/4 over the scan seen the same way."""
    import cv2

    tri_ids = model.render_triangle_ids()
    faces = model.triangles[tri_ids].astype(np.int64)
    colors = np.tile([0.86, 0.68, 0.58], (len(faces), 1))
    for name in ("eyeball_left", "eyeball_right"):
        # iris and pupil: angles from the eye's forward axis (sphere centre through the front,
        # which the model labels), on the mean shape
        va, vb = model.submeshes[name]
        p = model.mean[va:vb].astype(np.float64)
        A = np.concatenate([2 * p, np.ones((len(p), 1))], 1)
        centre = np.linalg.lstsq(A, (p * p).sum(1), rcond=None)[0][:3]
        front = model.part_labels[va:vb] > 0
        axis = p[front].mean(0) - centre
        angle = np.ones(model.n_vertices) * np.pi
        d = p - centre
        angle[va:vb] = np.arccos(np.clip(d @ axis / np.linalg.norm(d, axis=1) / np.linalg.norm(axis), -1, 1))
        a, b = model.submesh_triangles[name]
        sel = (tri_ids >= a) & (tri_ids < b)
        ang = angle[faces].mean(1)
        colors[sel] = [0.93, 0.93, 0.92]
        colors[sel & (ang < np.radians(28))] = [0.35, 0.45, 0.55]
        colors[sel & (ang < np.radians(11))] = [0.05, 0.05, 0.05]
    scan_m = head.to_model.apply(scan.verts)
    lm = head.verts[model.landmarks68]
    centre = lm[[27, 30, 36, 45]].mean(0) - [0, 0.02, 0]
    rows = []
    for verts, f, col in ((head.verts, faces, colors), (scan_m, scan.faces, None)):
        caster = hf.Caster(verts, f)
        row = []
        for yaw in (0.0, 35.0):
            back = np.array([np.sin(np.radians(yaw)), 0.05, np.cos(np.radians(yaw))])
            cam = hf.view_camera(centre, back, np.array([0, 1.0, 0]), 0.9, 0.34, size)
            row.append(hf.shade(caster, cam, col)[0])
        rows.append(np.concatenate(row, 1))
    cv2.imwrite(str(out), np.concatenate(rows, 0)[..., ::-1])


def stats(d_mm: np.ndarray) -> str:
    return f"{np.median(d_mm):8.2f} {np.percentile(d_mm, 95):8.2f} {d_mm.max():8.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", type=Path, default=LPS, help="head mesh (default: the Lee Perry-Smith scan)")
    ap.add_argument("--model", default="ict")
    ap.add_argument("--png", type=Path, default=None, help="write the registered head's render here")
    args = ap.parse_args()

    model = load_model(args.model)
    t0 = time.perf_counter()
    scan = hm.read_head_mesh(args.mesh)
    head = hm.register_model(model, scan)
    seconds = time.perf_counter() - t0

    topo = SkinTopology.of(model)
    face_held = hm.followed_face_vertices(model)
    lm = head.verts[model.landmarks68]
    lo, hi = scan.verts.min(0), scan.verts.max(0)

    print(f"mesh: {args.mesh} ({len(scan.verts)} vertices, {len(scan.faces)} triangles)")
    print(f"attribution: {head.attribution or '(no licence file found)'}")
    print()
    print(f"{'registration':58s} {'value':>10s}")
    print("-" * 69)
    print(f"{'run time incl. reading, landmarks, identity fit (s)':58s} {seconds:10.1f}")
    print(f"{'scale (m per mesh unit)':58s} {head.scale:10.5f}")
    print(f"{'mesh extent in metres (x, y, z)':58s} {np.array2string((hi - lo) * head.scale, precision=3):>10s}")
    print(f"{'outer eye corner distance (mm)':58s} {np.linalg.norm(lm[36] - lm[45]) * 1e3:10.1f}")
    print(f"{'eye opening, lid to lid at 37-41 / 43-47 (mm)':58s} "
          f"{np.linalg.norm(lm[37] - lm[41]) * 1e3:5.1f}/{np.linalg.norm(lm[43] - lm[47]) * 1e3:4.1f}")
    print(f"{'pupils visible (right, left)':58s} {str(head.pupils_visible.tolist()):>10s}")
    print(f"{'smallest signed area ratio vs the mean (> 0: no fold)':58s} {head.min_area_ratio:10.3f}")
    print(f"{'interior edges newly through the skin':58s} {head.n_new_crossings:10d}")
    print(f"{'identity coefficients |c| (K = %d)' % model.n_id:58s} {np.linalg.norm(head.id_coeffs):10.2f}")
    print()
    print(f"{'distance (mm)':58s} {'median':>8s} {'p95':>8s} {'max':>8s}")
    print("-" * 85)
    for label, r in (("face vertices to the scan", head.residual_mm),
                     ("  held by the scan (not eye/mouth rims, ears)", head.fitted_residual_mm)):
        print(f"{label:58s} {r[0]:8.2f} {r[1]:8.2f} {r[2]:8.2f}")
    for label, with_exp in (("identity + pose", False), ("identity + expressions + pose", True)):
        fit = span_fit(model, head.verts, topo.vids, with_exp)
        d = np.linalg.norm(fit - head.verts, axis=1) * 1e3
        print(f"{'registered skin to the model span, ' + label:58s} {stats(d[topo.vids])}")
        print(f"{'  face vertices held by the scan':58s} {stats(d[face_held])}")
    if args.png:
        render_png(model, head, scan, args.png)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
