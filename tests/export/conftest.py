"""A known textured head seen by known cameras: the fitted head, its ground-truth skin atlas and
the photos rendered from it (SH-lit), for the texture and export tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from mvrecon.cameras import Camera, look_at
from mvrecon.fit.result import FittedHead
from mvrecon.parts import PART_CODES
from mvrecon.render import render_mesh
from mvrecon.texture.bake import BakeView
from mvrecon.texture.layout import corner_uvs, material, material_triangles

IMG = 224
ATLAS = 192


@dataclass
class Scene:
    head: FittedHead
    cameras: list[Camera]
    photos: np.ndarray
    """(V, H, W, 3) float32 in [0, 1]."""
    gt_skin: np.ndarray
    """(S, 2S, 3) the albedo atlas the photos were rendered with."""
    face_px: np.ndarray
    """(V, H, W) bool: pixels on facial skin (the face sub-mesh, eyes excluded)."""
    views: list[BakeView]


def gt_atlas(S: int) -> np.ndarray:
    """A skin-like atlas with structure at several scales, so that a wrong texture renders wrong."""
    v, u = np.meshgrid(np.linspace(0, 1, S), np.linspace(0, 1, 2 * S), indexing="ij")
    base = np.array([0.72, 0.52, 0.42])
    a = np.sin(2 * np.pi * 9 * u) * np.cos(2 * np.pi * 7 * v)
    b = np.sin(2 * np.pi * 23 * (u + 0.3 * v))
    tex = base + 0.16 * a[..., None] * np.array([1.0, 0.6, 0.4]) + 0.08 * b[..., None] * np.array([0.3, 0.8, 1.0])
    return np.clip(tex, 0, 1).astype(np.float32)


def make_cameras(n: int = 5, size: int = IMG) -> list[Camera]:
    f = size * 2.4
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    cams = []
    for i, az in enumerate(np.linspace(-70, 70, n)):
        a = np.radians(az)
        c = np.array([0.75 * np.sin(a), 0.06 * (-1) ** i, 0.75 * np.cos(a)])
        cams.append(Camera(f"cam{i}", size, size, K, world_to_cam=look_at(c, [0, 0.0, 0.0])))
    return cams


def make_head(model, n_views: int, seed: int = 0) -> FittedHead:
    rng = np.random.default_rng(seed)
    N = model.n_vertices
    alpha = rng.normal(0, 0.7, model.n_id)
    beta = np.zeros((1, model.n_exp))
    beta[0, model.exp_names.index("jawOpen")] = 0.15
    sh = np.zeros((n_views, 9, 3))
    sh[:, 0] = 0.85
    sh[:, 1] = -0.06                     # light from above (the basis carries -y)
    sh[:, 3] = rng.normal(0, 0.05, (n_views, 1))
    sh[:, 2] = 0.12
    return FittedHead(model=model, alpha=alpha, beta=beta, R=np.eye(3)[None], t=np.array([[0.0, 0.01, 0.0]]),
                      scale=1.0, deform_offsets=np.zeros((N, 3)), fused_disp=np.zeros(N),
                      disp_maps=np.zeros((n_views, 16, 16), np.float32), sh=sh.astype(np.float32),
                      albedo=np.full((3, 8, 8), 0.6, np.float32), views=[f"f000_cam{i}" for i in range(n_views)],
                      group_of_view=np.zeros(n_views, np.int64), groups=["f000"], mode="per_frame")


def render_photos(head: FittedHead, cameras: list[Camera], skin_tex: np.ndarray, sh: np.ndarray, verts=None):
    """Render the skin (+ white eyeballs) with ``skin_tex`` (S, 2S, 3); returns images and the
    facial-skin pixel masks."""
    model = head.model
    skin = material("skin")
    ids = material_triangles(model, skin)
    eyes = np.concatenate([np.arange(*model.submesh_triangles[s]) for s in ("eyeball_left", "eyeball_right")])
    tri_ids = np.concatenate([ids, eyes])
    uv = np.concatenate([corner_uvs(model, ids, skin), np.zeros((len(eyes), 3, 2))]).reshape(-1, 2)
    tex = skin_tex.copy()
    tex[-2:, :2] = 0.9                     # UV (0, 0): the eyeballs' white
    world = head.world(0) if verts is None else verts
    faces = torch.as_tensor(model.triangles[tri_ids].astype(np.int64))
    K = torch.as_tensor(np.stack([c.K for c in cameras]))
    w2c = torch.as_tensor(np.stack([c.world_to_cam for c in cameras]))
    with torch.no_grad():
        r = render_mesh(torch.as_tensor(world), faces, K, w2c, cameras[0].height, cameras[0].width,
                        uv_faces=torch.arange(3 * len(tri_ids)).reshape(-1, 3), uvs=torch.as_tensor(uv),
                        texture=torch.as_tensor(tex).permute(2, 0, 1).to(torch.float64), sh=torch.as_tensor(sh, dtype=torch.float64),
                        background=0.1)
    tid = r.frags.tri_id.numpy()
    a, b = model.submesh_triangles["face"]
    good_labels = np.isin(model.part_labels, [PART_CODES[p] for p in ("skin", "nose", "upper_lip", "lower_lip",
                                                                         "left_brow", "right_brow")])
    face_tri = np.zeros(len(tri_ids), bool)
    face_tri[:] = (tri_ids >= a) & (tri_ids < b) & good_labels[model.triangles[tri_ids]].all(1)
    face_px = (tid >= 0) & face_tri[np.clip(tid, 0, None)]
    return r.image.numpy().astype(np.float32), face_px


@pytest.fixture(scope="module")
def scene(ict_model) -> Scene:
    model = ict_model
    cams = make_cameras()
    head = make_head(model, len(cams))
    tex = gt_atlas(ATLAS)
    photos, face_px = render_photos(head, cams, tex, head.sh)
    views = [BakeView(k, p, c, 0, s) for k, p, c, s in zip(head.views, photos, cams, head.sh)]
    return Scene(head, cams, photos, tex, face_px, views)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(((a - b) ** 2)[mask].mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def write_session(root, scene: Scene, with_fit: bool = True, textures: bool = False):
    """A session folder for ``scene``: rig, photos (8-bit PNG), session.json and (optionally) the
    fit's ``params.npz`` as the fit stage writes it and (``textures``) the texture stage's maps
    baked at :data:`ATLAS` (what the export reads). Returns the loaded Session."""
    from pathlib import Path

    from mvrecon.cameras import Rig, save_rig
    from mvrecon.geometry import matrix_to_axis_angle
    from mvrecon.io import write_image, write_npz
    from mvrecon.session import load_session, write_session_file

    root = Path(root)
    save_rig(Rig(tuple(scene.cameras), synchronized=True, name="synthetic"), root / "rig")
    images = {}
    for c, p in zip(scene.cameras, scene.photos):
        rel = f"images/f000/{c.name}.png"
        write_image(root / rel, np.clip(np.round(p * 255), 0, 255).astype(np.uint8))
        images[c.name] = rel
    # the photos are rendered in linear light and stored without an sRGB encoding
    write_session_file(root, "rig", [{"name": "f000", "images": images}], subject="synthetic",
                       options={"camera_response": "linear"})
    if with_fit:
        h = scene.head
        extra = {} if h.bias is None else {"bias": np.asarray(h.bias, np.float32)}
        write_npz(root / "fit" / "params.npz", **extra,
                  alpha=h.alpha.astype(np.float32), beta=h.beta.astype(np.float32),
                  rot=np.stack([matrix_to_axis_angle(R) for R in h.R]).astype(np.float32),
                  trans=h.t.astype(np.float32), log_scale=np.array(np.log(h.scale), np.float32),
                  deform=np.zeros((1, 3, 8, 8), np.float32), disp=h.disp_maps[:, None].astype(np.float32),
                  sh=h.sh.astype(np.float32), albedo=h.albedo[None].astype(np.float32),
                  views=np.array(h.views), group_of_view=h.group_of_view, groups=np.array(h.groups),
                  mode=np.array(h.mode), fused_disp_vertex=h.fused_disp.astype(np.float32), model=np.array("ict"))
    if textures:
        from mvrecon.texture.config import TextureConfig
        from mvrecon.texture.stage import run as bake

        bake(TextureConfig(size=ATLAS), load_session(root))
    return load_session(root)


@pytest.fixture(scope="session")
def export_helpers():
    """The helpers above for the test modules (conftest modules cannot be imported by name
    across test folders)."""
    import types

    return types.SimpleNamespace(ATLAS=ATLAS, IMG=IMG, write_session=write_session, render_photos=render_photos,
                                 psnr=psnr, gt_atlas=gt_atlas)
