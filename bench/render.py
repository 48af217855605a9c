"""Renderer speed: time per view, forward and forward+backward, at 256, 512 and 1024 px for 1 and 4
views of a ~25k-vertex head (the ICT model's neutral mesh when imported, else an icosphere of
similar size). Prints a table; never passes or fails on time.

    .venv/bin/python bench/render.py [--repeats 5] [--threads 2] [--sizes 256 512 1024] [--albedo texture]

Forward = ``render_mesh`` with per-vertex albedo (or a 1024 px UV texture) and SH lighting (what
the photometric fit renders); backward = an L1 image loss back to vertices, albedo, SH, K and world_to_cam. Times are
seconds per view: wall time median and best over repeats, and CPU time (all threads), because
on a shared machine wall time also counts waiting for other processes. When the cores are
oversubscribed, ``--threads 1`` is much faster than 2 (torch's worker threads wait on each other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from mvrecon.render import render_mesh


def head_mesh() -> tuple[torch.Tensor, torch.Tensor, str]:
    """verts (N, 3) metres, faces (F, 3) and a description; per-vertex UVs go to ``head_mesh.uvs``."""
    try:
        from mvrecon.facemodel import load_model

        m = load_model("ict")
        tri, uvt = np.asarray(m.triangles, np.int64), np.asarray(m.uv_triangles, np.int64)
        uv = np.zeros((len(m.mean), 2), np.float32)
        uv[tri.reshape(-1)] = np.asarray(m.uvs)[uvt.reshape(-1)] % 1.0     # fold the UDIM tiles into one
        head_mesh.uvs = torch.from_numpy(uv)
        return (torch.tensor(m.mean, dtype=torch.float32), torch.as_tensor(tri),
                f"ICT-FaceKit neutral mesh ({len(m.mean)} vertices, {len(m.triangles)} triangles)")
    except Exception as e:  # noqa: BLE001 - any failure to import the model falls back to a sphere
        import trimesh

        s = trimesh.creation.icosphere(subdivisions=6, radius=0.11)
        keep = s.vertices[:, 2] > -0.02      # a cap of ~25k vertices, open like a face mesh
        idx = -np.ones(len(keep), int)
        idx[keep] = np.arange(keep.sum())
        faces = idx[s.faces[keep[s.faces].all(1)]]
        xyz = s.vertices[keep]
        head_mesh.uvs = torch.tensor((xyz[:, :2] / 0.22 + 0.5).clip(0, 1), dtype=torch.float32)
        return (torch.tensor(s.vertices[keep], dtype=torch.float32), torch.as_tensor(faces),
                f"icosphere cap ({keep.sum()} vertices, {len(faces)} triangles; ICT not available: {e})")


def cameras(verts: torch.Tensor, views: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Portrait cameras 0.6 m from the head, yaw spread over +-30 degrees, head ~70% of the frame."""
    lo, hi = verts.min(0).values, verts.max(0).values
    centre, extent = (lo + hi) / 2, float((hi - lo).max())
    f = 0.7 * size * 0.6 / extent
    K = torch.tensor([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]]).expand(views, 3, 3).clone()
    Ms = []
    for yaw in np.linspace(-30, 30, views) if views > 1 else [0.0]:
        a = np.deg2rad(yaw)
        # camera on a circle in the x-z plane looking at the head centre; OpenCV axes (y down)
        R = np.array([[np.cos(a), 0, -np.sin(a)], [0, -1, 0], [-np.sin(a), 0, -np.cos(a)]])
        c = centre.numpy() + 0.6 * np.array([np.sin(a), 0, np.cos(a)])
        M = np.eye(4)
        M[:3, :3] = R
        M[:3, 3] = -R @ c
        Ms.append(M)
    return K, torch.tensor(np.stack(Ms), dtype=torch.float32)


def run_case(verts, faces, size, views, repeats, albedo_mode="vertex"):
    K0, M0 = cameras(verts, views, size)
    gen = torch.Generator().manual_seed(0)
    albedo0 = torch.rand(verts.shape[0], 3, generator=gen) if albedo_mode == "vertex" else \
        torch.rand(3, 1024, 1024, generator=gen)
    sh0 = torch.zeros(9, 3)
    sh0[0] = 0.8
    sh0[1:4] = 0.2
    target = torch.rand(views, size, size, 3, generator=gen)
    fwd, full, cpu_fwd, cpu_full, covered = [], [], [], [], 0
    for rep in range(repeats + 1):           # the first run warms caches and is not counted
        v = verts.clone().requires_grad_(True)
        albedo, sh = albedo0.clone().requires_grad_(True), sh0.clone().requires_grad_(True)
        K, M = K0.clone().requires_grad_(True), M0.clone().requires_grad_(True)
        t0, c0 = time.perf_counter(), time.process_time()
        colour = dict(vertex_colors=albedo) if albedo_mode == "vertex" else dict(texture=albedo, uvs=head_mesh.uvs)
        res = render_mesh(v, faces, K, M, size, size, sh=sh, backend="raycast", **colour)
        t1, c1 = time.perf_counter(), time.process_time()
        loss = ((res.image - target).abs() * res.mask[..., None]).sum()
        loss.backward()
        t2, c2 = time.perf_counter(), time.process_time()
        assert torch.isfinite(v.grad).all() and torch.isfinite(M.grad).all()
        if rep:
            fwd.append(t1 - t0)
            full.append(t2 - t0)
            cpu_fwd.append(c1 - c0)
            cpu_full.append(c2 - c0)
        covered = int(res.mask.sum()) // views
    med = statistics.median
    return (med(fwd) / views, med(full) / views, min(full) / views, med(cpu_fwd) / views, med(cpu_full) / views,
            covered)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--views", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--albedo", choices=["vertex", "texture"], default="vertex")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    verts, faces, what = head_mesh()
    print(f"mesh: {what}; albedo: {'per-vertex' if args.albedo == 'vertex' else '3x1024x1024 UV texture'}")
    print(f"torch {torch.__version__}, {args.threads} torch threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start; median of {args.repeats} runs")
    head = f"{'size':>6} {'views':>5} {'covered px/view':>16} {'fwd s/view':>11} {'fwd+bwd s/view':>15} " \
           f"{'best fwd+bwd':>13} {'cpu fwd':>9} {'cpu fwd+bwd':>12}"
    print(head)
    print("-" * len(head))
    for size in args.sizes:
        for views in args.views:
            f, fb, best, cf, cfb, cov = run_case(verts, faces, size, views, args.repeats, args.albedo)
            print(f"{size:>6} {views:>5} {cov:>16} {f:>11.3f} {fb:>15.3f} {best:>13.3f} {cf:>9.3f} {cfb:>12.3f}")
    print(f"load average {os.getloadavg()[0]:.1f} at end (2 cores: above ~2 the wall times include waiting)")


if __name__ == "__main__":
    main()
