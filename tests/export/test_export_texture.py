"""Texture bake: UV rasterisation, hole filling, multi-view de-lit albedo against a known atlas,
detail maps, procedural eyes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mvrecon.errors import InputError
from mvrecon.texture import bake_texture, normal_map_from_displacement, push_pull_fill, rasterize_uv
from mvrecon.texture.bake import TextureConfig
from mvrecon.texture.stage import decode_displacement, encode_displacement
from mvrecon.texture.uvraster import texel_uv



def test_uv_raster_barycentrics_reproduce_texel_uvs(rng):
    # three triangles in separate boxes of the UV square (no overlap), in random orientation
    boxes = np.array([[0.05, 0.05], [0.55, 0.1], [0.2, 0.6]])
    uv = (boxes[:, None] + rng.uniform(0, 0.35, (3, 3, 2))).reshape(-1, 2)
    tris = rng.permuted(np.arange(9).reshape(3, 3), axis=1)
    H, W = 64, 96
    r = rasterize_uv(uv, tris, H, W)
    got = r.interpolate(uv, tris)
    assert np.abs(got - texel_uv(H, W)[r.mask]).max() < 1e-4
    assert np.allclose(r.bary[r.mask].sum(1), 1, atol=1e-5) and (r.bary[r.mask] >= -1e-5).all()
    # covered texels match the triangles' area (every texel centre inside exactly one triangle)
    p = uv[tris]
    area = 0.5 * np.abs(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])).sum()
    assert abs(r.mask.sum() - area * H * W) < 0.08 * area * H * W
    assert (r.tri[r.mask] >= 0).all() and (r.tri[~r.mask] == -1).all()


def test_push_pull_keeps_known_texels_and_interpolates_holes():
    img = np.zeros((32, 32, 3))
    w = np.zeros((32, 32))
    img[:, :4] = [1, 0, 0]
    w[:, :4] = 1
    img[:, -4:] = [0, 0, 1]
    w[:, -4:] = 1
    out = push_pull_fill(img, w, np.array([0.5, 0.5, 0.5]))
    assert np.array_equal(out[w > 0], img[w > 0])
    # the middle is a mix of both sides, nearer columns nearer their side's colour
    assert 0.2 < out[16, 16, 0] < 0.8 and 0.2 < out[16, 16, 2] < 0.8
    assert out[16, 6, 0] > out[16, 25, 0]
    empty = push_pull_fill(img, np.zeros((32, 32)), np.array([0.3, 0.2, 0.1]))
    assert np.allclose(empty, [0.3, 0.2, 0.1])


@pytest.fixture(scope="module")
def baked(scene):
    return bake_texture(scene.head, scene.views, TextureConfig(size=scene.gt_skin.shape[0]))


def _atlas_psnr(tex, gt, mask):
    return 10 * np.log10(1 / float(((tex - gt) ** 2)[mask].mean()))


def test_bake_recovers_known_albedo(scene, baked):
    seen = baked.skin_weight > 0
    frac = seen[baked.skin_mask].mean()
    p = _atlas_psnr(baked.skin, scene.gt_skin, seen)
    print(f"bake: {100 * frac:.0f}% of skin texels seen, atlas PSNR {p:.1f} dB on them")
    assert frac > 0.5
    assert p > 30
    # hole filling: the whole atlas is defined and within [0, 1]
    assert np.isfinite(baked.skin).all() and baked.skin.min() >= 0 and baked.skin.max() <= 1
    assert set(baked.view_coverage) == set(scene.head.views) and min(baked.view_coverage.values()) > 0.1


def test_bake_divides_out_the_lighting(scene, baked):
    """Baking with the lighting ignored (unit irradiance) gives a visibly worse albedo."""
    flat = np.zeros((9, 3))
    flat[0] = 1 / (np.pi * (1 / np.sqrt(4 * np.pi)))      # irradiance 1 everywhere
    views = [replace(v, sh=flat) for v in scene.views]
    lit = bake_texture(scene.head, views, TextureConfig(size=scene.gt_skin.shape[0] // 2))
    seen = lit.skin_weight > 0
    gt_half = scene.gt_skin[::2, ::2]
    good = _atlas_psnr(baked.skin[::2, ::2], gt_half, seen)
    bad = _atlas_psnr(lit.skin, gt_half, seen)
    print(f"de-lit {good:.1f} dB vs lighting left in {bad:.1f} dB")
    assert bad < good - 6


def test_bake_rejects_mismatched_images(scene):
    v = replace(scene.views[0], image=scene.views[0].image[:-2])
    with pytest.raises(InputError, match="f000_cam0"):
        bake_texture(scene.head, [v], TextureConfig(size=32))


def test_eyes_are_procedural_with_iris_from_photos(scene, baked):
    eyes = baked.eyes
    # the synthetic photos show the eyeballs bright (0.9 albedo): the sampled iris colour must follow
    assert np.all(baked.iris_color > 0.6)
    lum = eyes.mean(-1)
    assert lum.min() < 0.05                  # a pupil
    assert np.median(lum) > 0.7              # mostly sclera
    assert baked.mouth[:, : baked.mouth.shape[1] // 2, 0].mean() > baked.mouth[:, : baked.mouth.shape[1] // 2, 1].mean() + 0.2


def test_normal_map_matches_displacement_slope():
    """A plane z = 0 over UV [0, 1]^2 of size 0.1 m with d = A sin(2 pi k u): the normal map's
    x component is -dd/ds = -A 2 pi k cos(2 pi k u) / 0.1."""
    H = W = 128
    verts = np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0.1, 0], [0, 0.1, 0]], float)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    r = rasterize_uv(uv, tris, H, W)
    u = texel_uv(H, W)[..., 0]
    A, k = 2e-4, 3
    disp = A * np.sin(2 * np.pi * k * u)
    nm = normal_map_from_displacement(disp, r, verts, tris, uv[tris])
    n = nm * 2 - 1
    want = -A * 2 * np.pi * k * np.cos(2 * np.pi * k * u) / 0.1
    got = n[..., 0] / n[..., 2]
    inner = r.mask.copy()
    inner[:, :2] = inner[:, -2:] = False
    assert np.abs(got - want)[inner].max() < 0.03 * np.abs(want).max() + 2 / 255 * 4
    assert np.abs(n[..., 1])[inner].max() < 0.02
    flat = normal_map_from_displacement(np.zeros((H, W)), r, verts, tris, uv[tris])
    assert np.allclose(flat[r.mask], [0.5, 0.5, 1.0])


def test_displacement_png_round_trip(rng):
    d = rng.normal(0, 3e-4, (40, 50))
    png, meta = encode_displacement(d)
    assert png.dtype == np.uint16 and meta["scale_m"] == pytest.approx(np.abs(d).max())
    back = decode_displacement(png, meta)
    assert np.abs(back - d).max() <= meta["scale_m"] / 65535 + 1e-12


def test_bake_uses_each_views_expression_group(scene, export_helpers):
    """Per-view expression groups: every view is projected onto its own group's mesh. Baking the
    open-mouth views onto the closed-mouth mesh (wrong groups) does worse around the mouth."""
    from mvrecon.fit.result import FittedHead

    head = scene.head
    model = head.model
    beta = np.zeros((2, model.n_exp))
    beta[1, model.exp_names.index("jawOpen")] = 0.6
    beta[1, model.exp_names.index("mouthSmile_L")] = 0.5
    V = len(scene.cameras)
    gov = np.arange(V) % 2
    h2 = replace(head, beta=beta, R=np.repeat(head.R, 2, 0), t=np.repeat(head.t, 2, 0), group_of_view=gov,
                 groups=["g0", "g1"], mode="per_view")
    assert isinstance(h2, FittedHead)
    photos = np.zeros_like(scene.photos)
    for g in (0, 1):
        imgs, _ = export_helpers.render_photos(h2, scene.cameras, scene.gt_skin, head.sh, verts=h2.world(g))
        photos[gov == g] = imgs[gov == g]
    S = scene.gt_skin.shape[0] // 2
    gt = scene.gt_skin[::2, ::2]
    views = [replace(v, image=photos[i], group=int(gov[i])) for i, v in enumerate(scene.views)]
    right = bake_texture(h2, views, TextureConfig(size=S))
    wrong = bake_texture(h2, [replace(v, group=0) for v in views], TextureConfig(size=S))
    seen = (right.skin_weight > 0) & (wrong.skin_weight > 0)
    p_right, p_wrong = _atlas_psnr(right.skin, gt, seen), _atlas_psnr(wrong.skin, gt, seen)
    print(f"per-view groups: right {p_right:.1f} dB, all on group 0 {p_wrong:.1f} dB")
    assert p_right > 30 and p_right > p_wrong + 2


def test_bake_takes_out_the_fits_colour_bias(scene, export_helpers, tmp_path):
    """The fit models a photo as albedo x irradiance + a per-view colour bias (linear light); photos
    with a known bias, baked through the texture stage from the fit's params.npz, give the true
    albedo back, while ignoring the bias (what dividing by the shading alone does) does not."""
    from mvrecon.texture.stage import run as run_texture

    V = len(scene.cameras)
    bias = np.array([0.05, 0.035, 0.02]) + 0.01 * np.arange(V)[:, None]
    photos = np.clip(scene.photos + bias[:, None, None, :].astype(np.float32), 0, 1)
    assert photos.max() < 1                               # nothing clipped: the model holds exactly
    head = replace(scene.head, bias=bias)
    session = export_helpers.write_session(tmp_path / "s", replace(scene, head=head, photos=photos))
    S = scene.gt_skin.shape[0] // 2
    cfg = TextureConfig(size=S, person_mask=False)
    tex = run_texture(cfg, session).textures
    ignored = bake_texture(head, [replace(v, image=photos[i], bias=None) for i, v in enumerate(scene.views)], cfg)
    gt = scene.gt_skin[::2, ::2]
    seen = (tex.skin_weight > 0) & (ignored.skin_weight > 0)
    p_with, p_without = _atlas_psnr(tex.skin, gt, seen), _atlas_psnr(ignored.skin, gt, seen)
    print(f"colour bias taken out {p_with:.1f} dB, left in {p_without:.1f} dB")
    assert p_with > 30 and p_with > p_without + 4


def test_person_mask_colour_refinement_pulls_the_edge_onto_the_person(rng):
    """A skin-coloured disc on a blue backdrop with a sloppy (too large) segmentation: the colour
    refinement puts the backdrop ring below 0.5 and keeps the disc above it."""
    from mvrecon.texture.person import refine_by_colour

    H = W = 160
    yy, xx = np.mgrid[:H, :W]
    r = np.hypot(yy - 80, xx - 80)
    img = np.where((r < 40)[..., None], [0.78, 0.55, 0.45], [0.15, 0.3, 0.75]) + rng.normal(0, 0.02, (H, W, 3))
    sloppy = (r < 48).astype(np.float32)                  # 8 px of backdrop called person
    out = refine_by_colour(np.clip(img, 0, 1), sloppy, band_px=12)
    ring = (r > 42) & (r < 47)
    disc = r < 38
    assert out[ring].mean() < 0.5 and (out[disc] > 0.5).all()
    assert sloppy[ring].mean() == 1.0                    # the input said person there


def test_unseen_skin_takes_its_regions_seen_colour():
    """A backdrop-blue rim on the seen area does not spread far: texels well away from anything
    seen take the region's median seen colour (skin), not the rim's."""
    from mvrecon.texture.bake import _region_fill

    H, W = 64, 128
    alb = np.zeros((H, W, 3))
    known = np.zeros((H, W), bool)
    known[:, :40] = True
    alb[:, :40] = [0.7, 0.5, 0.4]
    alb[:, 36:40] = [0.2, 0.3, 0.8]                      # the rim sampled the backdrop
    region = np.zeros((H, W), np.int64)
    out = _region_fill(alb, known, np.ones((H, W), bool), region, np.array([0.5, 0.5, 0.5]), reach_px=16)
    assert np.array_equal(out[known], alb[known])
    far = out[:, 70:]
    assert np.allclose(far, [0.7, 0.5, 0.4], atol=1e-6)
    assert (out[:, 40:][..., 2] > out[:, 40:][..., 0]).mean() < 0.1


def test_delighting_happens_in_linear_light(scene):
    """sRGB photos: decoded to linear before the division by the (linear) irradiance, the atlas
    comes out as the sRGB encoding of the true albedo; dividing the encoded values does worse."""
    from mvrecon.texture.bake import srgb_decode, srgb_encode

    S = scene.gt_skin.shape[0] // 2
    gt_enc = srgb_encode(scene.gt_skin[::2, ::2])
    cfg = TextureConfig(size=S, person_mask=False)
    # photos an sRGB camera would write of an albedo whose sRGB encoding is gt_enc
    photos = [srgb_encode(v.image) for v in scene.views]
    right = bake_texture(scene.head, [replace(v, image=srgb_decode(p).astype(np.float32)) for v, p in zip(scene.views, photos)],
                         cfg, response="srgb")
    wrong = bake_texture(scene.head, [replace(v, image=p.astype(np.float32)) for v, p in zip(scene.views, photos)], cfg)
    seen = right.skin_weight > 0
    p_right, p_wrong = _atlas_psnr(right.skin, gt_enc, seen), _atlas_psnr(wrong.skin, gt_enc, seen)
    print(f"linear-light de-lighting {p_right:.1f} dB, on encoded values {p_wrong:.1f} dB")
    assert p_right > 28 and p_right > p_wrong + 5
