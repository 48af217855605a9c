"""Small synthetic inputs for the report tests: an icosphere, a quad, images with known content."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvrecon.io import write_image
from mvrecon.report import Overlay, ReportContent, StageRow, ViewerMesh


def icosphere(subdivisions: int = 3, radius: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) vertices (metres) and (F, 3) outward counter-clockwise triangles of a sphere."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(s.vertices, float), np.asarray(s.faces, np.int64)


def sphere_uv(v: np.ndarray) -> np.ndarray:
    """(N, 2) per-vertex UVs that are a smooth function of position (no seam)."""
    r = np.linalg.norm(v, axis=1, keepdims=True)
    return 0.5 + 0.5 * v[:, :2] / r


def checker(size: int = 256, cells: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] // (size // cells)
    c = ((yy + xx) % 2).astype(np.uint8)
    return np.stack([200 * c + 40, 120 + 0 * c, 230 - 180 * c], -1).astype(np.uint8)


def quadrant_texture(size: int = 128) -> np.ndarray:
    """Top-left red, top-right green, bottom half blue (rows top first, as stored in the PNG)."""
    img = np.zeros((size, size, 3), np.uint8)
    h = size // 2
    img[:h, :h] = (255, 0, 0)
    img[:h, h:] = (0, 255, 0)
    img[h:] = (0, 0, 255)
    return img


def quad_mesh(texture: Path) -> ViewerMesh:
    """A 0.2 m square facing +Z with OBJ UVs (v up): uv (0, 1) is the top-left corner."""
    v = np.array([[-0.1, -0.1, 0.0], [0.1, -0.1, 0.0], [0.1, 0.1, 0.0], [-0.1, 0.1, 0.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    return ViewerMesh(v, f, uv, None, texture=texture)


def write_inputs(folder: Path, n_views: int = 3) -> dict:
    """Overlay photos (JPEG and one PNG), texture, heatmap and loss curve with distinct content."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {"overlays": []}
    for i in range(n_views):
        img = np.full((120, 160, 3), 60 + 40 * i, np.uint8)
        cv2.circle(img, (80, 60), 30 + 5 * i, (230, 180, 150), -1)
        path = folder / (f"cam{i}.png" if i == n_views - 1 else f"cam{i}.jpg")
        write_image(path, img)
        out["overlays"].append(path)
    out["texture"] = write_image(folder / "albedo.png", checker())
    ramp = np.repeat(np.linspace(0, 255, 200)[None, :, None], 60, 0).astype(np.uint8)
    out["heatmap"] = write_image(folder / "heat.png", np.concatenate([ramp, 255 - ramp, ramp // 2], -1))
    out["loss_curve"] = write_image(folder / "loss.png", np.concatenate([ramp // 3, ramp, 255 - ramp], -1))
    return out


def full_content(folder: Path, mesh: ViewerMesh | None) -> ReportContent:
    files = write_inputs(folder)
    return ReportContent(
        subject="synthetic subject 01",
        provenance={"rig": "studio8", "cameras": "3"},
        stages=[
            StageRow("calibrate", "done", 2.5, {"reprojection RMS (px)": 0.31}),
            StageRow("fit", "done", 40.2, {"landmark error (px)": 1.9, "loss": 0.0123}),
            StageRow("evaluate", "failed", 0.1, note="scan.ply: not found"),
        ],
        overlays=[Overlay(p, p.stem) for p in files["overlays"]],
        texture=files["texture"],
        heatmap=files["heatmap"],
        loss_curve=files["loss_curve"],
        metrics={"scan error": {"mean (mm)": 1.234, "median (mm)": 0.98}, "views": 3},
        mesh=mesh,
    )


def two_part_glb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A GLB with a textured sphere (quadrant texture) left of the origin and an untextured
    yellow sphere right of it; returns the sphere's vertices and triangles."""
    import trimesh
    from PIL import Image

    v, f = icosphere(3)
    left = trimesh.Trimesh(v - [0.12, 0, 0], f, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=sphere_uv(v), image=Image.fromarray(quadrant_texture(32))))
    yellow = trimesh.visual.material.PBRMaterial(baseColorFactor=[230, 200, 20, 255])
    right = trimesh.Trimesh(v + [0.12, 0, 0], f, process=False, visual=trimesh.visual.TextureVisuals(material=yellow))
    scene = trimesh.Scene({"skin": left, "eyes": right})
    path.write_bytes(scene.export(file_type="glb"))
    return v, f
