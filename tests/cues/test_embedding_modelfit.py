"""The MediaPipe landmark embedding, the per-view model fit through it, and the labels it renders."""

from __future__ import annotations

import numpy as np
import pytest

from mvrecon.cameras import Camera
from mvrecon.errors import InputError


def _random_surface_points(model, rng, n):
    from mvrecon.cues.embedding import EMBED_SUBMESHES

    tri_ids = model.render_triangle_ids(EMBED_SUBMESHES[:1])  # the face
    tri = rng.choice(tri_ids, n, replace=False)
    b = rng.dirichlet([4, 4, 4], n)
    return tri, b


def test_embedding_is_the_robust_centre_of_the_hits(ict_model, rng):
    """Hits scattered ~1 mm around known surface points, with a fifth of the views far off (a
    mis-placed point), give back the known points: the median resists the outliers."""
    from mvrecon.cues.embedding import N_POINTS, embed_observations

    m = ict_model
    tri, bary = _random_surface_points(m, rng, N_POINTS)
    true = np.einsum("pk,pkd->pd", bary, m.mean[m.triangles[tri]])
    # observations: the true triangle with jittered barycentrics (~1 mm), or a random far triangle
    obs = []
    for v in range(15):
        jitter = np.clip(bary + rng.normal(0, 0.08, bary.shape), 0.01, None)
        jitter /= jitter.sum(1, keepdims=True)
        tid = tri.copy()
        if v % 5 == 0:  # every fifth view is wrong everywhere
            tid = rng.choice(m.render_triangle_ids(("face",)), N_POINTS)
        obs.append((tid, jitter, np.ones(N_POINTS)))
    emb = embed_observations(m, obs)
    got = emb.points(m.mean, m.triangles)
    err_mm = 1000 * np.linalg.norm(got - true, axis=1)
    # the wrong views alone would put a plain mean centimetres off
    assert np.median(err_mm) < 0.5, np.median(err_mm)
    assert np.percentile(err_mm, 95) < 1.5
    assert (emb.n_obs == 15).all()
    np.testing.assert_allclose(emb.bary.sum(1), 1.0)


def test_embedding_too_few_views_is_an_error(ict_model, rng):
    from mvrecon.cues.embedding import N_POINTS, embed_observations
    from mvrecon.errors import MvreconError

    tri, bary = _random_surface_points(ict_model, rng, N_POINTS)
    with pytest.raises(MvreconError, match="fewer than 3 views"):
        embed_observations(ict_model, [(tri, bary, np.ones(N_POINTS))] * 2)


def test_embedding_file_round_trip_and_bad_files(ict_model, ict_embedding, tmp_path):
    from mvrecon.cues.embedding import LandmarkEmbedding

    p = ict_embedding.save(tmp_path / "e.npz")
    back = LandmarkEmbedding.load(p).check(ict_model)
    np.testing.assert_array_equal(back.triangle, ict_embedding.triangle)
    np.testing.assert_allclose(back.bary, ict_embedding.bary)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        LandmarkEmbedding.load(tmp_path / "bad.npz")
    other = LandmarkEmbedding(**{**back.__dict__, "topology": "0" * 16})
    with pytest.raises(InputError, match="another topology"):
        other.check(ict_model)


@pytest.fixture(scope="module")
def known_view(ict_model):
    """A known ICT head (identity at 1 sd, an expression, turned 25 degrees) in a 1024x768
    camera with lens distortion, and the embedded points projected exactly."""
    from mvrecon.cues.modelfit import ViewFit

    m = ict_model
    rng = np.random.default_rng(5)
    idc = rng.normal(0, 1.0, m.n_id)
    exc = np.zeros(m.n_exp)
    exc[rng.choice(m.n_exp, 6, replace=False)] = rng.uniform(0.2, 0.7, 6)
    ang = np.radians(25)
    R = np.array([[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]])
    R = np.diag([1, -1, -1]) @ R  # model y up, z to the camera -> OpenCV camera axes
    t = np.array([0.0, 0.0, 1.0]) - R @ m.mean.mean(0)
    K = np.array([[2600.0, 0, 511.5], [0, 2600.0, 383.5], [0, 0, 1]])
    cam = Camera(name="c", width=1024, height=768, K=K, dist=np.array([-0.08, 0.1, 0, 0, 0]),
                 world_to_cam=np.eye(4))
    return ViewFit(R=R, t=t, id_coeffs=idc, exp_coeffs=exc, rms_px=0.0), cam


def test_fit_view_recovers_a_known_head(ict_model, ict_embedding, known_view):
    """Exact points: the fit (started from the mean shape) lands on them, and the part labels it
    renders are those of the true head. The mean shape alone misses them by pixels."""
    from mvrecon.cues.modelfit import fit_view, render_labels
    from mvrecon.parts import PART_CODES

    m, emb = ict_model, ict_embedding
    truth, cam = known_view
    X = emb.points(m.vertices(truth.id_coeffs, truth.exp_coeffs), m.triangles) @ truth.R.T + truth.t
    px = cam.replace(world_to_cam=np.eye(4)).project(X)[0]
    fit = fit_view(m, emb, px, np.ones(len(px)), cam)
    assert fit.rms_px < 1.5, fit.rms_px  # the prior's share: a MAP fit for MediaPipe's ~3 px noise
    weak = fit_view(m, emb, px, np.ones(len(px)), cam, id_reg=1e-3, exp_reg=1e-3, iters=30, n_id=None)
    assert weak.rms_px < 0.2, weak.rms_px
    assert np.abs(weak.id_coeffs - truth.id_coeffs).mean() < 0.1
    want = render_labels(m, truth, cam)
    got = render_labels(m, fit, cam)
    mean_only = render_labels(m, fit.__class__(R=fit.R, t=fit.t, id_coeffs=0 * fit.id_coeffs,
                                               exp_coeffs=0 * fit.exp_coeffs, rms_px=0), cam)

    def iou(a, b, c):
        return ((a == c) & (b == c)).sum() / max(((a == c) | (b == c)).sum(), 1)

    for part in ("skin", "nose", "right_eye", "left_eye", "upper_lip", "lower_lip"):
        c = PART_CODES[part]
        assert (want == c).sum() > 100, part
        assert iou(got, want, c) > 0.8, (part, iou(got, want, c))
    lips = [PART_CODES["upper_lip"], PART_CODES["lower_lip"]]
    fitted, mean_shape = (np.mean([iou(x, want, c) for c in lips]) for x in (got, mean_only))
    print(f"lips IoU: fitted {fitted:.3f}, mean shape in the fitted pose {mean_shape:.3f}")
    assert mean_shape < fitted - 0.1


def test_model_parser_on_the_astronaut(ict_model, ict_embedding, astronaut, astronaut_cues):
    """The real photo: every part found, eyes inside the skin's box, lips below the nose, and each
    part where the landmark polygons put it (a different definition: the centres agree within a
    tenth of the inter-ocular distance, ~5 px here, not the outlines)."""
    from mvrecon.cues.parsing import ModelParser, PolygonParser
    from mvrecon.parts import PART_CODES

    parser = ModelParser(ict_model, ict_embedding)
    lab = parser.parse(astronaut, astronaut_cues)
    assert parser.last_fit.rms_px < 6.0
    poly = PolygonParser().parse(astronaut, astronaut_cues)
    lm = astronaut_cues.points68
    iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    ys = {}
    for part, c in PART_CODES.items():
        if part == "background":
            continue
        got, ref = lab == c, poly == c
        assert got.sum() > 20, part
        gy, gx = np.nonzero(got)
        ry, rx = np.nonzero(ref)
        assert np.hypot(gx.mean() - rx.mean(), gy.mean() - ry.mean()) < 0.1 * iod, part
        ys[part] = gy.mean()
    sy, sx = np.nonzero(lab == PART_CODES["skin"])
    for eye in ("right_eye", "left_eye"):
        ey, ex = np.nonzero(lab == PART_CODES[eye])
        assert sx.min() < ex.mean() < sx.max() and sy.min() < ey.mean() < sy.max()
    assert ys["upper_lip"] > ys["nose"] and ys["lower_lip"] > ys["upper_lip"]
    with pytest.raises(ValueError, match="camera is"):
        parser.parse(astronaut, astronaut_cues, camera=Camera(name="x", width=10, height=10, K=np.eye(3),
                                                               dist=np.zeros(0), world_to_cam=np.eye(4)))


def _brow_scene(contrast: float):
    """A skin-coloured image with a dark elliptic 'brow' (true mask), and a landmark mask
    shifted 4 px down and 3 px right (the landmarks' typical error)."""
    import cv2

    from mvrecon.parts import PART_CODES

    rng = np.random.default_rng(0)
    img = np.empty((160, 240, 3), np.float64)
    img[:] = (205, 160, 135)
    truth = np.zeros((160, 240), np.uint8)
    cv2.ellipse(truth, (120, 70), (45, 8), -5, 0, 360, 1, -1)
    img[truth > 0] = img[truth > 0] * (1 - contrast) + np.array([70, 50, 40]) * contrast
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    labels = np.zeros((160, 240), np.uint8)
    labels[20:150, 20:220] = PART_CODES["skin"]
    for c, x in ((PART_CODES["right_eye"], 90), (PART_CODES["left_eye"], 150)):
        cv2.ellipse(labels, (x, 110), (12, 5), 0, 0, 360, int(c), -1)
        cv2.ellipse(img, (x, 110), (12, 5), 0, 0, 360, (235, 235, 230), -1)
    base = np.roll(np.roll(truth, 4, 0), 3, 1)
    labels[base > 0] = PART_CODES["right_brow"]
    return img, labels, truth > 0


def test_refine_moves_a_brow_onto_its_colour_edge():
    from mvrecon.cues.refine import refine_labels
    from mvrecon.parts import PART_CODES

    img, labels, truth = _brow_scene(contrast=0.8)
    c = PART_CODES["right_brow"]
    before = ((labels == c) & truth).sum() / ((labels == c) | truth).sum()
    report = {}
    out = refine_labels(img, labels, report=report)
    after = ((out == c) & truth).sum() / ((out == c) | truth).sum()
    assert before < 0.6 and after > 0.85, (before, after)
    assert report["right_brow"] == "kept"
    assert (out[labels == PART_CODES["right_eye"]] == PART_CODES["right_eye"]).all()  # other parts kept


def test_refine_keeps_the_landmarks_without_contrast():
    """A brow the colour of the skin: no edge to follow, the landmark mask stays as it was."""
    from mvrecon.cues.refine import refine_labels
    from mvrecon.parts import PART_CODES

    img, labels, _ = _brow_scene(contrast=0.0)
    report = {}
    out = refine_labels(img, labels, report=report)
    c = PART_CODES["right_brow"]
    assert report["right_brow"].startswith("kept landmarks") or ((out == c) == (labels == c)).mean() > 0.99, report


def test_undistorted_ray_grid_matches_undistorting_every_pixel():
    from mvrecon.cues.modelfit import _undistort_grid

    K = np.array([[2600.0, 0, 511.5], [0, 2600.0, 383.5], [0, 0, 1]])
    cam = Camera(name="c", width=1024, height=768, K=K, dist=np.array([-0.12, 0.2, 4e-4, -4e-4, 0]),
                 world_to_cam=np.eye(4))
    gx, gy = np.arange(0, 1024, 2.0) + 0.5, np.arange(-20, 790, 2.0)  # past the top and bottom edges too
    xx, yy = np.meshgrid(gx, gy)
    want = cam.undistort_points(np.stack([xx.ravel(), yy.ravel()], 1))
    got = _undistort_grid(cam, gx, gy)
    assert got.shape == want.shape
    assert np.abs(got - want).max() * 2600 < 0.01  # pixels
    # the distortion is large enough here to matter if the grid were not undistorted
    assert np.abs(xx.ravel() - (want[:, 0] * 2600 + 511.5)).max() > 3


@pytest.fixture(scope="module")
def known_frame(ict_model, ict_embedding):
    """A known ICT head seen by four rig cameras (-40 to 40 degrees, 1 m, 1024x768): the true
    world-frame fit, the cameras, and each view's embedded points projected exactly."""
    from mvrecon.cameras import look_at
    from mvrecon.cues.modelfit import ViewFit

    m, emb = ict_model, ict_embedding
    rng = np.random.default_rng(11)
    idc = rng.normal(0, 1.0, m.n_id)
    exc = np.zeros(m.n_exp)
    exc[rng.choice(m.n_exp, 5, replace=False)] = rng.uniform(0.2, 0.6, 5)
    truth = ViewFit(R=np.eye(3), t=-m.mean.mean(0), id_coeffs=idc, exp_coeffs=exc, rms_px=0.0)
    K = np.array([[2600.0, 0, 511.5], [0, 2600.0, 383.5], [0, 0, 1]])
    cams = []
    for i, deg in enumerate((-40, -15, 15, 40)):
        a = np.radians(deg)
        cams.append(Camera(name=f"cam{i}", width=1024, height=768, K=K, dist=np.array([-0.05, 0.05, 0, 0, 0]),
                           world_to_cam=look_at((np.sin(a), 0.02, np.cos(a)), (0, 0.02, 0))))
    Xw = emb.points(m.vertices(idc, exc), m.triangles) @ truth.R.T + truth.t
    pts = [cam.project(Xw)[0] for cam in cams]
    return truth, cams, pts


def test_frame_fit_averages_the_views_noise(ict_model, ict_embedding, known_frame):
    """Each view's points carry their own 3 px noise: one head fitted to all four views lands
    nearer the true points in every view than the views' own fits do (on average)."""
    from mvrecon.cues.modelfit import fit_view, fit_views, in_camera

    m, emb = ict_model, ict_embedding
    truth, cams, pts = known_frame
    rng = np.random.default_rng(3)
    noisy = [p + rng.normal(0, 3.0, p.shape) for p in pts]
    conf = np.ones(len(pts[0]))
    X_of = lambda f: emb.points(m.vertices(f.id_coeffs, f.exp_coeffs), m.triangles) @ f.R.T + f.t  # noqa: E731
    own_err, frame_err = [], []
    frame = fit_views(m, emb, [(p, conf, c) for p, c in zip(noisy, cams)])
    for p_true, p, cam in zip(pts, noisy, cams):
        local = cam.replace(world_to_cam=np.eye(4))
        own = fit_view(m, emb, p, conf, cam)
        own_err.append(np.linalg.norm(local.project(X_of(own))[0] - p_true, axis=1).mean())
        frame_err.append(np.linalg.norm(local.project(X_of(in_camera(frame, cam)))[0] - p_true, axis=1).mean())
    print(f"mean point error (px): own fits {np.mean(own_err):.2f}, frame fit {np.mean(frame_err):.2f}")
    assert np.mean(frame_err) < 0.75 * np.mean(own_err)
    assert np.linalg.norm(frame.t - truth.t) < 0.01  # metres: the pose is the world's


def test_parse_frame_leaves_out_a_wrong_view(ict_model, ict_embedding, known_frame):
    """One view's points belong to another head and place (a wrong face, or a camera knocked
    after calibration): it is left out of the shared fit and labelled where its own points are;
    the others' labels stay those of the true head (the robust loss also keeps the wrong view
    from pulling them)."""
    from mvrecon.cues.facemesh import FaceCues
    from mvrecon.cues.modelfit import in_camera, render_labels
    from mvrecon.cues.parsing import ModelParser
    from mvrecon.parts import PART_CODES

    m, emb = ict_model, ict_embedding
    truth, cams, pts = known_frame
    pts = [p.copy() for p in pts]
    pts[2] = pts[2] * 0.8 + np.array([160.0, 90.0])  # smaller, elsewhere: not this head
    conf = np.ones(len(pts[0]))
    cues = [FaceCues(image_size=(1024, 768), points478=np.c_[p, np.zeros(len(p))], conf478=conf,
                     points68=np.zeros((68, 2)), conf68=np.ones(68), box=np.array([0, 0, 1, 1.0]),
                     score=1.0, method="detector") for p in pts]
    images = [np.zeros((768, 1024, 3), np.uint8) for _ in cams]
    parser = ModelParser(m, emb, refine=False)
    labels = parser.parse_frame(images, cues, cams)
    assert parser.last_frame_views == [True, True, False, True]

    def iou(a, b, c):
        return ((a == c) & (b == c)).sum() / max(((a == c) | (b == c)).sum(), 1)

    for i in (0, 1, 3):
        want = render_labels(m, in_camera(truth, cams[i]), cams[i])
        for part in ("skin", "nose", "lower_lip"):
            assert iou(labels[i], want, PART_CODES[part]) > 0.8, (i, part)
    ys, xs = np.nonzero(labels[2] == PART_CODES["nose"])
    lo, hi = pts[2].min(0), pts[2].max(0)
    assert len(xs) and lo[0] < xs.mean() < hi[0] and lo[1] < ys.mean() < hi[1]  # on its own face
    frame_there = render_labels(m, in_camera(truth, cams[2]), cams[2])
    assert iou(labels[2], frame_there, PART_CODES["nose"]) < 0.2  # not the frame's head
    with pytest.raises(ValueError, match="one image, one FaceCues and one camera"):
        parser.parse_frame(images[:2], cues, cams)
