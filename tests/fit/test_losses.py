import numpy as np
import torch
import pytest

from mvrecon.fit.losses import (anchor_grid, contour_loss, gamma_stats, landmark_loss, photometric_loss, prdl_loss,
                                sample_mask_points, tv_loss, tv_std_loss)
from mvrecon.fit.losses.contour import row_spans


def ellipse(cx, cy, rx, ry, n=80):
    t = torch.linspace(0, 2 * np.pi, n + 1)[:-1]
    return torch.stack([cx + rx * torch.cos(t), cy + ry * torch.sin(t)], -1).double()


def chamfer(a, b):
    d = torch.cdist(a, b)
    return 0.5 * (d.min(1).values.mean() + d.min(0).values.mean())


def test_gamma_stats_masking_equals_subset():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(2, 50, 2, generator=g, dtype=torch.float64)
    anc = torch.rand(2, 30, 2, generator=g, dtype=torch.float64)
    valid = torch.rand(2, 50, generator=g) > 0.4
    got = gamma_stats(pts, anc, valid)
    for v in range(2):
        ref = gamma_stats(pts[v : v + 1, valid[v]], anc[v : v + 1])
        torch.testing.assert_close(got[v], ref[0])


def prdl_setup(target_pts):
    box = torch.tensor([[0.0, 0.0, 200.0, 200.0]], dtype=torch.float64)
    anchors = anchor_grid(box, n=16)
    scale = torch.tensor([200.0], dtype=torch.float64)
    tg = gamma_stats(target_pts[None] / 200.0, anchors / 200.0)[:, None]  # (1, 1, A, 3)
    return anchors, scale, tg


def filled_ellipse(cx, cy, rx, ry, step=3.0):
    g = torch.arange(-1, 1.0001, step / max(rx, ry), dtype=torch.float64)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    keep = xx**2 + yy**2 <= 1
    return torch.stack([cx + rx * xx[keep], cy + ry * yy[keep]], -1)


def test_prdl_zero_at_target_and_positive_elsewhere():
    target = ellipse(100, 100, 30, 20)
    anchors, scale, tg = prdl_setup(target)
    args = (torch.ones(80, dtype=torch.long), torch.ones(1, 80, dtype=torch.bool), tg, torch.ones(1, 1, dtype=torch.bool),
            anchors, scale, torch.ones(1, dtype=torch.float64))
    assert prdl_loss(target[None], *args).item() < 1e-20
    assert prdl_loss((target + torch.tensor([10.0, 0]))[None], *args).item() > 1e-4


def test_prdl_pulls_a_part_onto_its_mask_from_far_away():
    # A part (filled ellipse, like mask pixels) driven by a few parameters, as model vertices are.
    # Source and target do not overlap at all: an IoU-style loss would have no gradient here.
    target = filled_ellipse(120, 110, 30, 18)
    base = filled_ellipse(0, 0, 1, 1, step=0.08)
    anchors, scale, tg = prdl_setup(target)
    params = torch.tensor([60.0, 60.0, 15.0, 25.0], dtype=torch.float64, requires_grad=True)  # cx, cy, rx, ry
    part = torch.ones(len(base), dtype=torch.long)
    vis = torch.ones(1, len(base), dtype=torch.bool)
    has = torch.ones(1, 1, dtype=torch.bool)
    w = torch.ones(1, dtype=torch.float64)
    src = lambda: params[:2] + base * params[2:]
    before = chamfer(src().detach(), target).item()
    opt = torch.optim.Adam([params], lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        prdl_loss(src()[None], part, vis, tg, has, anchors, scale, w).backward()
        opt.step()
    assert before > 30
    np.testing.assert_allclose(params.detach().numpy(), [120, 110, 30, 18], atol=1.0)


def test_prdl_ignores_invisible_vertices_and_empty_masks():
    target = ellipse(100, 100, 30, 20)
    anchors, scale, tg = prdl_setup(target)
    src = (target + 15.0)[None].requires_grad_(True)
    vis = torch.zeros(1, 80, dtype=torch.bool)
    vis[0, :40] = True
    loss = prdl_loss(src, torch.ones(80, dtype=torch.long), vis, tg, torch.ones(1, 1, dtype=torch.bool), anchors, scale,
                     torch.ones(1, dtype=torch.float64))
    loss.backward()
    assert src.grad[0, 40:].abs().max() == 0 and src.grad[0, :40].abs().max() > 0
    empty = prdl_loss(src, torch.ones(80, dtype=torch.long), vis, tg, torch.zeros(1, 1, dtype=torch.bool), anchors, scale,
                      torch.ones(1, dtype=torch.float64))
    assert empty.item() == 0


def test_sample_mask_points_bounded_and_spread():
    lab = np.zeros((300, 300), np.uint8)
    lab[50:250, 40:260] = 3
    pts = sample_mask_points(lab, 3, max_points=500)
    assert len(pts) == 500
    assert pts[:, 0].min() <= 45 and pts[:, 0].max() >= 255 and pts[:, 1].min() <= 55 and pts[:, 1].max() >= 245
    assert set(np.unique(lab[pts[:, 1].astype(int), pts[:, 0].astype(int)])) == {3}


def test_landmark_loss_zero_at_match_and_outlier_bounded():
    tgt = torch.rand(3, 68, 2, dtype=torch.float64) * 100
    w = torch.ones(3, 68, dtype=torch.float64)
    scale = torch.full((3,), 50.0, dtype=torch.float64)
    assert landmark_loss(tgt, tgt, w, scale).item() == 0
    small = landmark_loss(tgt + 1.0, tgt, w, scale).item()
    pred = tgt.clone()
    pred[0] += 1000.0  # a whole view wildly off
    big = landmark_loss(pred, tgt, w, scale).item()
    assert small > 0 and big <= 0.05**2  # bounded by robust^2 whatever the outlier size
    w0 = w.clone()
    w0[0] = 0
    assert landmark_loss(pred, tgt, w0, scale).item() == 0


def test_photometric_masked():
    img = torch.rand(2, 8, 8, 3)
    ren = img.clone()
    ren[:, :4] += 0.5
    m = torch.zeros(2, 8, 8)
    m[:, 4:] = 1
    assert photometric_loss(ren, img, m).item() < 0.01
    m[:, :4] = 1
    assert photometric_loss(ren, img, m).item() > 0.4


def test_contour_penalises_only_outside_span():
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[0, :, 5:15] = True
    spans = row_spans(mask)
    inside = torch.tensor([[[7.0, 3.0], [14.0, 10.0]]])
    outside = torch.tensor([[[2.0, 3.0], [18.0, 10.0]]])
    vis = torch.ones(1, 2, dtype=torch.bool)
    s = torch.tensor([10.0])
    assert contour_loss(inside, vis, spans, s).item() == 0
    assert contour_loss(outside, vis, spans, s).item() > 0.05


def test_tv_losses():
    flat = torch.ones(1, 3, 16, 16)
    noisy = flat + torch.randn(1, 3, 16, 16)
    assert tv_loss(flat).item() == 0 and tv_loss(noisy).item() > 0.5
    assert tv_std_loss(flat).item() == 0 and tv_std_loss(noisy).item() > 0.5
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[:8] = True
    half = flat.clone()
    half[..., 8:, :] = torch.randn(1, 3, 8, 16)
    assert tv_loss(half, m).item() == 0


def test_part_stats_values_and_hand_written_gradient():
    from mvrecon.fit.losses.prdl import part_stats

    g = torch.Generator().manual_seed(0)
    a = torch.rand(30, 2, dtype=torch.float64, generator=g)
    x = torch.rand(17, 2, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.rand(17, dtype=torch.float64, generator=g)
    d = torch.cdist(a, x)
    ref = torch.stack([d.min(-1).values, d.max(-1).values, d @ (w / w.sum())], -1)
    assert torch.allclose(part_stats(a, x, w), ref, atol=1e-12)
    assert torch.allclose(part_stats(a, x), gamma_stats(x[None], a[None])[0], atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: part_stats(a, x, w), (x,))
    assert torch.autograd.gradcheck(lambda x: part_stats(a, x), (x,))


def test_mask_iou_zero_at_match_and_flat_when_disjoint():
    from mvrecon.fit.losses import mask_iou_loss

    codes = torch.tensor([1, 2])
    target = torch.zeros(1, 20, 20, dtype=torch.uint8)
    target[0, 5:10, 5:10] = 1
    target[0, 12:16, 12:16] = 2
    prob = (target[..., None] == codes).double()
    assert float(mask_iou_loss(prob, target, codes)) == pytest.approx(0.0, abs=1e-12)
    # half of part 1 covered: IoU 0.5 on that part, 0 loss on the other
    half = prob.clone()
    half[0, 5:10, 5:8, 0] = 0
    half[0, 5:10, 7, 0] = 0
    assert float(mask_iou_loss(half, target, codes)) == pytest.approx(0.5 * (1 - 10 / 25), abs=1e-9)
    # a part rendered entirely off its mask scores 1, however far away it is (no distance signal)
    for x0 in (0, 14):
        off = torch.zeros_like(prob)
        off[0, x0 : x0 + 4, 0:4, 0] = 1.0
        off[..., 1] = prob[..., 1]
        assert float(mask_iou_loss(off, target, codes)) == pytest.approx(0.5)


def test_outlier_views_by_error():
    from mvrecon.fit.init import outlier_views

    nan = float("nan")
    assert outlier_views(np.array([0.02, 0.03, 0.25, 0.025]), 3.0, 0.05) == [2]
    assert outlier_views(np.array([0.02, 0.03, 0.05, 0.025]), 3.0, 0.05) == []
    # too few judged views to tell who is wrong, or too few would remain
    assert outlier_views(np.array([0.02, nan, 0.25, nan]), 3.0, 0.05) == []
    assert outlier_views(np.array([0.02, 0.3, 0.25, 0.4]), 0.5, 0.0) == []


def _views_of_points(n_views: int, rng, noise_px: float = 0.3):
    """Projection matrices of a rig around the origin (yaws -45..45 degrees, 0.5 m away, f 500 px)
    and the noisy pixels (V, 68, 2) of 68 points in a head-sized box."""
    X = rng.uniform(-0.07, 0.07, (68, 3))
    K = np.array([[500.0, 0, 128], [0, 500.0, 128], [0, 0, 1]])
    P = []
    for yaw in np.radians(np.linspace(-45, 45, n_views)):
        R = np.array([[np.cos(yaw), 0, -np.sin(yaw)], [0, 1, 0], [np.sin(yaw), 0, np.cos(yaw)]])
        P.append(K @ np.c_[R, [0, 0, 0.5]])
    P = np.stack(P)
    h = np.einsum("vij,nj->vni", P, np.c_[X, np.ones(68)])
    px = h[..., :2] / h[..., 2:] + rng.normal(0, noise_px, (n_views, 68, 2))
    return P, px, np.ones((n_views, 68)), np.full(n_views, 50.0)


def test_judge_views_moves_back_a_displaced_view_and_drops_a_scrambled_one(rng):
    from mvrecon.fit.init import consistency_scores, judge_views

    P, px, conf, fs = _views_of_points(4, rng)
    assert judge_views(P, px, conf, fs) == []
    shifted = px.copy()
    shifted[1] += [12.0, -5.0]
    s = consistency_scores(P, shifted, conf, fs)
    assert np.nanargmin(s[1:]) == 1 and s[0] > 3 * s[2]  # leaving view 1 out makes the rest agree
    (vd,) = judge_views(P, shifted, conf, fs)
    assert vd.view == 1 and vd.action == "shift"
    assert np.allclose(vd.shift_px, [-12.0, 5.0], atol=0.5) and vd.score_after < 0.3 * vd.score_before
    scrambled = px.copy()
    scrambled[2] += rng.normal(0, 8.0, (68, 2))  # not a displacement: no shift explains it
    (vd,) = judge_views(P, scrambled, conf, fs)
    assert vd.view == 2 and vd.action == "drop"
    # three views: leaving one out leaves two, which always agree; nobody can be judged
    P3, px3, conf3, fs3 = _views_of_points(3, rng)
    px3[1] += [12.0, -5.0]
    assert judge_views(P3, px3, conf3, fs3) == []
