"""Cross-view photo-consistency: the score is lowest on the true surface, its gradient moves a
wrong surface back, and a camera pose correction recovers a drifted camera."""

from __future__ import annotations

import math

import numpy as np
import torch

from mvrecon.cameras import look_at
from mvrecon.fit.consistency import choose_sample, consistency_loss, photo_consistency
from mvrecon.geometry import axis_angle_to_matrix

S = 128
Z0 = 0.5


def _texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth random pattern on the plane (a few mm features), in [0.2, 0.8]."""
    rng = np.random.default_rng(3)
    out = np.zeros_like(x)
    for _ in range(12):
        k = rng.uniform(300, 900, 2)
        ph = rng.uniform(0, 2 * np.pi)
        out += np.sin(k[0] * x + k[1] * y + ph)
    return 0.5 + 0.3 * out / 12 ** 0.5 / 2


def _camera(cx: float) -> tuple[np.ndarray, np.ndarray]:
    """A camera at (cx, 0, 0) looking at the plane's centre (0, 0, Z0)."""
    f = 400.0
    K = np.array([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1.0]])
    return K, look_at((cx, 0.0, 0.0), (0.0, 0.0, Z0))


def _photo(K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """The plane z = Z0 as the camera sees it (every pixel hits it)."""
    u, v = np.meshgrid(np.arange(S), np.arange(S))
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    R, t = w2c[:3, :3], w2c[:3, 3]
    c = -R.T @ t
    d = d_cam @ R
    s = (Z0 - c[2]) / d[..., 2]
    p = c + s[..., None] * d
    g = _texture(p[..., 0], p[..., 1])
    return np.repeat(g[..., None], 3, -1)


def _plane_mesh(n: int = 30, half: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    xs = np.linspace(-half, half, n)
    X, Y = np.meshgrid(xs, xs)
    verts = np.stack([X.ravel(), Y.ravel(), np.full(X.size, Z0)], 1)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a = i * n + j
            faces += [(a, a + n, a + 1), (a + 1, a + n, a + n + 1)]   # normals towards the cameras (-z)
    return torch.as_tensor(verts, dtype=torch.float32), torch.as_tensor(np.array(faces), dtype=torch.long)


def _setup():
    cams = [_camera(-0.12), _camera(0.12)]
    K = torch.as_tensor(np.stack([c[0] for c in cams]), dtype=torch.float32)
    w2c = torch.as_tensor(np.stack([c[1] for c in cams]), dtype=torch.float32)
    image = torch.as_tensor(np.stack([_photo(*c) for c in cams]), dtype=torch.float32)
    verts, faces = _plane_mesh()
    inner = (verts[:, :2].abs() < 0.02).all(1)
    sample = choose_sample(inner, torch.zeros(2, dtype=torch.long))
    vis = torch.ones(2, len(verts), dtype=torch.bool)
    return K, w2c, image, verts, faces, sample, vis


def test_the_true_surface_scores_best_and_a_wrong_one_worse():
    K, w2c, image, verts, faces, sample, vis = _setup()
    score = lambda v: photo_consistency(v[None].expand(2, -1, -1), faces, sample, image, K, w2c, vis)["score"]  # noqa: E731
    scores = [score(verts + torch.tensor([0.0, 0.0, mm * 1e-3])) for mm in (0.0, 1.0, 2.0, -2.0)]
    assert scores[0] < 0.02
    # 1 mm is 0.4 px of disparity here
    assert scores[0] + 0.03 < scores[1] < scores[2] and scores[3] > scores[0] + 0.1 and scores[2] > scores[0] + 0.1


def test_the_loss_moves_a_displaced_surface_back():
    K, w2c, image, verts, faces, sample, vis = _setup()
    gray = image.mean(-1)[:, None]
    dz = torch.tensor(1.5e-3, requires_grad=True)
    opt = torch.optim.Adam([dz], lr=1.5e-4)
    for _ in range(60):
        opt.zero_grad()
        v = verts + torch.stack([torch.zeros(()), torch.zeros(()), dz])
        loss = consistency_loss(v[None].expand(2, -1, -1), faces, sample, gray, K, w2c, vis)
        loss.backward()
        opt.step()
    assert abs(float(dz.detach())) < 0.3e-3


def test_a_drifted_camera_is_seen_and_a_pose_correction_recovers_it():
    K, w2c, image, verts, faces, sample, vis = _setup()
    gray = image.mean(-1)[:, None]
    # the second camera's shipped pose is rotated 0.15 degree (1.3 mm at the plane) about its vertical axis: its photo
    # (taken with the true pose) then disagrees with the first on the true surface
    drift = torch.as_tensor([0.0, math.radians(0.15), 0.0])
    shipped = w2c.clone()
    shipped[1, :3, :3] = axis_angle_to_matrix(drift[None])[0] @ w2c[1, :3, :3]
    shipped[1, :3, 3] = axis_angle_to_matrix(drift[None])[0] @ w2c[1, :3, 3]
    v2 = verts[None].expand(2, -1, -1)
    good = photo_consistency(v2, faces, sample, image, K, w2c, vis)["score"]
    bad = photo_consistency(v2, faces, sample, image, K, shipped, vis)["score"]
    assert bad > good + 0.05
    # moving view 1's vertices (its camera, equivalently) by a fitted rotation about the surface's
    # centre and a translation, as the fit's camera pose correction does
    r = torch.zeros(3, requires_grad=True)
    t = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([{"params": [r], "lr": 2e-4}, {"params": [t], "lr": 1e-4}])
    c = verts.mean(0)

    def moved():
        R = axis_angle_to_matrix(r[None])[0]
        return torch.stack([verts, (verts - c) @ R.T + c + t])

    for _ in range(60):
        opt.zero_grad()
        loss = consistency_loss(moved(), faces, sample, gray, K, shipped, vis)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert photo_consistency(moved(), faces, sample, image, K, shipped, vis)["score"] < good + 0.3 * (bad - good)


def test_camera_corrections_are_zero_mean_and_move_only_their_views():
    from mvrecon.fit.optimize import correct_views

    world = torch.randn(1, 50, 3).expand(4, -1, -1) * 0.05 + torch.tensor([0.0, 0.0, 1.0])
    cam_of_view = torch.tensor([0, 1, 0, 1])                   # two frames of a two-camera rig
    same = torch.tensor([[0.01, -0.02, 0.005, 0.002, 0.001, -0.003]]).repeat(2, 1)
    assert torch.allclose(correct_views(world, same, cam_of_view), world, atol=1e-7)
    one = torch.zeros(2, 6)
    one[1, 3] = 2e-3                                            # camera 1 alone: 1 mm each way after the gauge
    moved = correct_views(world, one, cam_of_view)
    assert torch.allclose(moved[[1, 3]] - world[[1, 3]], torch.tensor([1e-3, 0.0, 0.0]).expand(2, 50, 3), atol=1e-7)
    assert torch.allclose(moved[[0, 2]] - world[[0, 2]], torch.tensor([-1e-3, 0.0, 0.0]).expand(2, 50, 3), atol=1e-7)
