"""Photographs of the ground-truth head through real (distorted) cameras.

Every output pixel is ``ss x ss`` rays; each ray is the exact undistortion of its sub-pixel
position (``mvrecon.calibrate.board.camera_rays``, the same rays the ChArUco shots use), cast
against the head with Open3D. So a 3D point projected with ``Camera.project`` (distortion on)
lands exactly where it is drawn, without resampling a pinhole image. Shading is Lambertian with
the SH convention of :func:`mvrecon.render.sh_basis` on world-space normals, then a per-camera
colour gain, a slight gamma and Gaussian sensor noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..cameras import Camera
from ..facemodel import FaceModel
from ..geometry import vertex_normals
from ..parts import triangle_labels
from . import meshops as mo

if TYPE_CHECKING:
    from ..render.raycast import MeshScene


@dataclass(frozen=True)
class Scene:
    """One frame's render mesh in world coordinates (metres).

    verts (M, 3); faces (F, 3); textured (F,) bool (skin: colour from the texture at
    ``uvs[uv_faces]``, else from ``colors`` (M, 3)); labels (F,) uint8 part code of each triangle;
    normals (M, 3) unit; texture (Ht, Wt, 3) over u in [0, u_tiles).
    """

    verts: np.ndarray
    faces: np.ndarray
    textured: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    colors: np.ndarray
    labels: np.ndarray
    normals: np.ndarray
    texture: np.ndarray
    u_tiles: int
    material_tex: np.ndarray | None = None
    """(Ht, Wt) uint8 material codes over the texture atlas (:mod:`.dress`), or None."""
    face_material: np.ndarray | None = None
    """(F,) uint8 material of the untextured faces (eyes, mouth), or None."""
    specular: np.ndarray | None = None
    """(M, 2) per-vertex Blinn-Phong strength and exponent (the ``skin`` factor), or None."""
    key_visibility: np.ndarray | None = None
    """(M,) fraction of the key light's area each vertex sees (soft shadows), or None."""
    linear_albedo: bool = False
    """Decode the albedo from sRGB to linear before shading (the ``camera`` factor's sRGB response)."""

    def raycaster(self) -> MeshScene:
        from ..render.raycast import MeshScene

        return MeshScene(self.verts, self.faces)


def build_scene(
    model: FaceModel,
    skin: mo.UVMesh,
    verts_model: np.ndarray,
    extra_tri_ids: np.ndarray,
    head_to_world: np.ndarray,
    texture: np.ndarray,
    u_tiles: int,
    vertex_colors: np.ndarray,
) -> Scene:
    """Combine the detailed skin (textured) with model triangles ``extra_tri_ids`` (eyeballs, mouth
    interior; vertex-coloured, at ``verts_model`` (N, 3) model space) and move it to the world."""
    tri_labels = triangle_labels(model)
    R, t = head_to_world[:3, :3], head_to_world[:3, 3]
    skin_w = skin.verts @ R.T + t
    extra = model.triangles[extra_tri_ids].astype(np.int64)
    used = np.unique(extra)
    remap = np.full(model.n_vertices, -1, np.int64)
    remap[used] = np.arange(len(used)) + len(skin_w)
    extra_w = np.asarray(verts_model, np.float64)[used] @ R.T + t
    verts = np.concatenate([skin_w, extra_w], 0)
    faces = np.concatenate([skin.faces, remap[extra]], 0)
    n_skin_f = len(skin.faces)
    normals = np.concatenate(
        [vertex_normals(skin_w, skin.faces), vertex_normals(verts, remap[extra])[len(skin_w) :]], 0
    )
    colors = np.zeros((len(verts), 3), np.float32)
    colors[len(skin_w) :] = vertex_colors[used]
    uv_faces = np.concatenate([skin.uv_faces, np.zeros((len(extra), 3), np.int64)], 0)
    textured = np.zeros(len(faces), bool)
    textured[:n_skin_f] = True
    labels = np.concatenate([tri_labels[skin.parent], tri_labels[extra_tri_ids]])
    return Scene(
        verts=verts,
        faces=faces,
        textured=textured,
        uvs=skin.uvs,
        uv_faces=uv_faces,
        colors=colors,
        labels=labels,
        normals=normals,
        texture=texture,
        u_tiles=u_tiles,
    )


def append_mesh(
    scene: Scene,
    verts: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    uv_faces: np.ndarray,
    material_tex_codes: bool = True,
) -> Scene:
    """``scene`` plus a textured mesh (world ``verts`` (V, 3), ``faces`` (F, 3), atlas ``uvs`` (T, 2),
    ``uv_faces`` (F, 3)): part label 0 (not a face part), material from the atlas's material map."""
    n_v, n_t = len(scene.verts), len(scene.uvs)
    v = np.concatenate([scene.verts, verts], 0)
    f = np.concatenate([scene.faces, np.asarray(faces, np.int64) + n_v], 0)
    normals = np.concatenate(
        [scene.normals, vertex_normals(np.asarray(verts, np.float64), np.asarray(faces, np.int64))], 0
    )
    colors = np.concatenate([scene.colors, np.zeros((len(verts), 3), scene.colors.dtype)], 0)
    fm = None if scene.face_material is None else np.concatenate([scene.face_material, np.zeros(len(faces), np.uint8)])
    spec = (
        None if scene.specular is None else np.concatenate([scene.specular, np.tile([[0.01, 8.0]], (len(verts), 1))], 0)
    )
    return dataclasses.replace(
        scene,
        verts=v,
        faces=f,
        normals=normals,
        colors=colors,
        face_material=fm,
        specular=spec,
        uvs=np.concatenate([scene.uvs, uvs], 0),
        uv_faces=np.concatenate([scene.uv_faces, np.asarray(uv_faces, np.int64) + n_t], 0),
        textured=np.concatenate([scene.textured, np.ones(len(faces), bool)]),
        labels=np.concatenate([scene.labels, np.zeros(len(faces), scene.labels.dtype)]),
    )


@dataclass(frozen=True)
class KeyLight:
    """A disc light far away: unit ``direction`` (3,) towards it (world), ``rgb`` (3,) irradiance on
    a surface facing it, ``radius_deg`` its angular radius (the softness of its shadows)."""

    direction: np.ndarray
    rgb: np.ndarray
    radius_deg: float = 4.0


def key_visibility(scene: Scene, key: KeyLight, samples: int = 12, offset_m: float = 4e-4) -> np.ndarray:
    """(M,) fraction of the key light's disc each scene vertex sees (soft cast shadows), from
    ``samples`` shadow rays on a fixed spiral over the disc (deterministic)."""

    d = np.asarray(key.direction, np.float64)
    d /= np.linalg.norm(d)
    a = np.cross(d, [0.0, 1.0, 0.0] if abs(d[1]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(d, a)
    k = np.arange(samples) + 0.5
    r = np.tan(np.radians(key.radius_deg)) * np.sqrt(k / samples)
    phi = k * np.pi * (3 - np.sqrt(5))
    dirs = d[None] + r[:, None] * (np.cos(phi)[:, None] * a + np.sin(phi)[:, None] * b)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = scene.verts + offset_m * scene.normals
    caster = scene.raycaster()
    seen = np.zeros(len(origin))
    for dd in dirs:
        rays = np.concatenate([origin, np.broadcast_to(dd, origin.shape)], 1).astype(np.float32)
        hit = caster.occluded(rays)
        seen += ~hit
    facing = scene.normals @ d > -0.2
    return np.where(facing, seen / samples, 0.0)


def world_rays(camera: Camera, ss: int, sample: int | None = None, pixels: np.ndarray | None = None) -> np.ndarray:
    """(ss*ss, H*W, 6) float32 rays [origin, direction] of every sub-pixel sample (or (H*W, 6) of
    one ``sample``, or (P, 6) of its flat ``pixels`` indices); the direction has camera-space
    z = 1, so a hit distance is the camera depth."""
    from ..calibrate.board import camera_rays

    xn = camera_rays(camera, ss)  # (S, H*W, 2) undistorted
    if sample is not None:
        xn = xn[sample] if pixels is None else xn[sample][pixels]
    R = camera.world_to_cam[:3, :3].astype(np.float32)
    out = np.empty(xn.shape[:-1] + (6,), np.float32)
    out[..., :3] = camera.center
    # R^T [x, y, 1] written out: a (P, 2) @ (2, 3) matmul takes numpy's slow non-BLAS path
    x = xn[..., 0:1].astype(np.float32)
    y = xn[..., 1:2].astype(np.float32)
    out[..., 3:] = x * R[0] + y * R[1] + R[2]
    return out


def _cast(raycaster: MeshScene, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hits = raycaster.cast(rays.reshape(-1, 6))
    return hits.triangles, hits.barycentric()


def backdrop(camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """A softly lit studio backdrop (H, W, 3) in [0, 1]: a random grey-blue tone, brighter at the
    top, a gentle vignette and low-frequency mottling."""
    import cv2

    h, w = camera.height, camera.width
    base = np.array([0.42, 0.45, 0.50]) * rng.uniform(0.8, 1.15) + rng.uniform(-0.03, 0.03, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    grad = 1.0 + 0.12 * (0.5 - yy / h)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    vign = 1.0 - 0.25 * r2
    small = rng.standard_normal((8, 8)).astype(np.float32)
    mottle = cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_CUBIC)
    mottle = mottle / max(float(np.abs(mottle).max()), 1e-9)
    img = base[None, None] * (grad * vign * (1 + 0.04 * mottle))[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


@dataclass(frozen=True)
class ViewRender:
    """image (H, W, 3) uint8; labels (H, W) uint8 part codes at pixel centres; mask (H, W) bool
    (the head covers the pixel centre)."""

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    material: np.ndarray | None = None
    """(H, W) uint8 material codes (:mod:`.dress`) when the scene has a material map."""


def _monomials(n: np.ndarray) -> np.ndarray:
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    return np.stack([np.ones_like(x), x, y, z, x * y, y * z, x * z, x * x, y * y, z * z], 1)


def irradiance_polynomial(sh: np.ndarray) -> np.ndarray:
    """(10, 3) coefficients of the SH irradiance ``sh_basis(n) @ sh`` as a quadratic polynomial in
    the normal (monomials 1, x, y, z, xy, yz, xz, x^2, y^2, z^2).

    Second-order SH irradiance is exactly such a polynomial; fitting it on sample normals with
    :func:`mvrecon.render.sh_basis` keeps the renderer's convention while the per-ray evaluation
    stays a small numpy product (torch's per-element overhead dominated otherwise).
    """
    import torch

    from ..render import sh_basis

    g = np.random.default_rng(0).standard_normal((64, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    E = sh_basis(torch.from_numpy(g)).numpy() @ np.asarray(sh, np.float64)
    C, *_ = np.linalg.lstsq(_monomials(g), E, rcond=None)
    return C


def shade(scene: Scene, prim: np.ndarray, bary: np.ndarray, sh_poly: np.ndarray) -> np.ndarray:
    """Linear colour (P, 3) of ray hits (prim >= 0 only): albedo times SH irradiance
    (``sh_poly`` from :func:`irradiance_polynomial`), normals interpolated per ray."""
    irr = _monomials(_hit_normals(scene, prim, bary)) @ sh_poly  # (P, 3)
    return _albedo(scene, prim, bary) * np.clip(irr, 0, None)


def shade_key(
    scene: Scene, prim: np.ndarray, bary: np.ndarray, sh_poly: np.ndarray, key: KeyLight, view_dirs: np.ndarray
) -> np.ndarray:
    """Linear colour (P, 3) of ray hits under the SH ambient (``sh_poly``) and the key light with
    its soft shadows (``scene.key_visibility``) and a Blinn-Phong specular lobe
    (``scene.specular``); ``view_dirs`` (P, 3) the rays' directions."""
    f = scene.faces[prim]
    n = _hit_normals(scene, prim, bary)
    albedo = _albedo(scene, prim, bary)
    if scene.linear_albedo:
        from .realism import srgb_decode

        albedo = srgb_decode(albedo)
    vis = np.einsum("pk,pk->p", bary, scene.key_visibility[f]) if scene.key_visibility is not None else 1.0
    ndl = np.clip(n @ key.direction, 0, None) * vis
    irr = np.clip(_monomials(n) @ sh_poly, 0, None) + ndl[:, None] * key.rgb[None]
    out = albedo * irr
    if scene.specular is not None:
        ks, ex = np.einsum("pk,pkc->pc", bary, scene.specular[f]).T
        v = -view_dirs / np.linalg.norm(view_dirs, axis=1, keepdims=True)
        hv = v + key.direction[None]
        hv /= np.maximum(np.linalg.norm(hv, axis=1, keepdims=True), 1e-12)
        ndh = np.clip(np.einsum("pc,pc->p", n, hv), 0, None)
        fres = 0.04 + 0.96 * (1 - np.clip(np.einsum("pc,pc->p", v, hv), 0, 1)) ** 5
        spec = ks * (ex + 8) / (8 * np.pi) * ndh**ex * ndl * fres / 0.04
        out = out + spec[:, None] * key.rgb[None]
    return out


def _hit_normals(scene: Scene, prim: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Unit normals (P, 3) interpolated at ray hits."""
    n = np.einsum("pk,pkc->pc", bary, scene.normals[scene.faces[prim]])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _albedo(scene: Scene, prim: np.ndarray, bary: np.ndarray) -> np.ndarray:
    f = scene.faces[prim]
    albedo = np.empty((len(prim), 3))
    tex = scene.textured[prim]
    if tex.any():
        uvf = scene.uv_faces[prim[tex]]
        uv = np.einsum("pk,pkc->pc", bary[tex], scene.uvs[uvf])
        albedo[tex] = mo.sample_map(scene.texture, uv, u_range=(0.0, float(scene.u_tiles)))
    if (~tex).any():
        albedo[~tex] = np.einsum("pk,pkc->pc", bary[~tex], scene.colors[f[~tex]].astype(np.float64))
    return albedo


def render_view(
    scene: Scene,
    raycaster: MeshScene,
    camera: Camera,
    sh: np.ndarray,
    rng: np.random.Generator,
    ss: int = 2,
    gain: np.ndarray | None = None,
    gamma: float = 1.0,
    noise_sigma: float = 1.5 / 255,
    background: np.ndarray | None = None,
    key: KeyLight | None = None,
    response=None,
) -> ViewRender:
    """Render one camera: supersampled colour over ``background`` (H, W, 3) in [0, 1] (default: a
    :func:`backdrop` drawn from ``rng``), sensor response and noise; part labels and the mask from
    the ray through each pixel centre.

    ``key``: a key light with soft shadows and specular (:func:`shade_key`) beside the SH
    ambient ``sh``; ``response``: a :class:`mvrecon.synth.realism.CameraResponse` applied to the
    linear image instead of ``gain``, ``gamma`` and ``noise_sigma`` (the background is then
    decoded from sRGB first).
    """
    h, w = camera.height, camera.width
    bg = (backdrop(camera, rng) if background is None else np.asarray(background, np.float64)).reshape(-1, 3)
    if response is not None:
        from .realism import srgb_decode

        bg = srgb_decode(bg)
    gain = np.ones(3) if gain is None or response is not None else np.asarray(gain, np.float64)
    sh_poly = irradiance_polynomial(sh)
    idx = _covered_pixels(scene, camera)  # only rays that can hit the head are cast
    acc = bg.astype(np.float64) * (ss * ss)
    acc[idx] = 0.0
    for s in range(ss * ss):  # one sub-pixel offset at a time bounds the memory
        rays = world_rays(camera, ss, s, idx)
        prim, bary = _cast(raycaster, rays)
        col = bg[idx].astype(np.float64)
        hit = prim >= 0
        if key is None:
            col[hit] = shade(scene, prim[hit], bary[hit], sh_poly) * gain
        else:
            col[hit] = shade_key(scene, prim[hit], bary[hit], sh_poly, key, rays[hit, 3:].astype(np.float64)) * gain
        acc[idx] += col
    if response is None:
        img = np.clip(acc / (ss * ss), 0, 1) ** (1.0 / gamma)
        img = img + rng.normal(0.0, noise_sigma, img.shape)
        image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8).reshape(h, w, 3)
    else:
        image = response.apply((acc / (ss * ss)).reshape(h, w, 3), camera, rng)

    prim = np.full(h * w, -1, np.int64)
    bary = np.zeros((h * w, 3))
    prim[idx], bary[idx] = _cast(raycaster, world_rays(camera, 1, 0, idx))
    labels = np.where(prim >= 0, scene.labels[np.maximum(prim, 0)], 0).astype(np.uint8).reshape(h, w)
    material = None
    if scene.material_tex is not None:
        material = np.zeros(h * w, np.uint8)
        hit_px = np.flatnonzero(prim >= 0)
        p = prim[hit_px]
        tex = scene.textured[p]
        uv = np.einsum("pk,pkc->pc", bary[hit_px[tex]], scene.uvs[scene.uv_faces[p[tex]]])
        Ht, Wt = scene.material_tex.shape
        j = np.clip((uv[:, 0] / scene.u_tiles * Wt).astype(np.int64), 0, Wt - 1)
        i = np.clip(((1 - uv[:, 1]) * Ht).astype(np.int64), 0, Ht - 1)
        material[hit_px[tex]] = scene.material_tex[i, j]
        if scene.face_material is not None:
            material[hit_px[~tex]] = scene.face_material[p[~tex]]
        material = material.reshape(h, w)
    return ViewRender(image=image, labels=labels, mask=(prim >= 0).reshape(h, w), material=material)


def _covered_pixels(scene: Scene, camera: Camera, margin: int = 3) -> np.ndarray:
    """Flat indices of the pixels inside the bounding box (plus ``margin``) of the scene's projected
    vertices: every ray outside it misses (triangles lie within their corners' convex hull, and
    the lens distortion of a real camera is monotonic over the image). All pixels when some
    vertex is behind the camera."""
    h, w = camera.height, camera.width
    uv, z = camera.project(scene.verts)
    if np.any(z <= 0) or not np.all(np.isfinite(uv)):
        return np.arange(h * w)
    x0, y0 = np.floor(uv.min(0)).astype(int) - margin
    x1, y1 = np.ceil(uv.max(0)).astype(int) + margin
    x0, x1 = np.clip([x0, x1], 0, w - 1)
    y0, y1 = np.clip([y0, y1], 0, h - 1)
    if x1 < x0 or y1 < y0:
        return np.zeros(0, np.int64)
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    return (yy * w + xx).reshape(-1)


def landmarks_2d(
    raycaster: MeshScene, camera: Camera, points: np.ndarray, eps_m: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Projected pixels (L, 2) (distortion on) of world points (L, 3) and their visibility (L,):
    in front of the camera, inside the image, and nothing on the ray closer than ``eps_m`` before
    the point (the surface the point lies on does not hide it)."""
    uv, z = camera.project(points)
    c = camera.center
    d = np.asarray(points, np.float64) - c
    dist = np.linalg.norm(d, axis=1)
    rays = np.concatenate([np.broadcast_to(c, d.shape), d], 1).astype(np.float32)
    tfar = (1.0 - eps_m / np.maximum(dist, 1e-9)).astype(np.float32)
    t = raycaster.cast(rays).t_hit
    occluded = np.isfinite(t) & (t < tfar)
    inside = (
        (uv[:, 0] >= -0.5) & (uv[:, 0] <= camera.width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= camera.height - 0.5)
    )
    return uv, (z > 0) & inside & ~occluded
