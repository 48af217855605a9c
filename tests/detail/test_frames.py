"""Multi-frame sessions: the identity's fine detail shared by the frames, an expression's
wrinkles kept in the frames that make them (:mod:`mvrecon.detail.frames`)."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter

from mvrecon.detail import PRESETS, face_grid
from mvrecon.detail.frames import principal_log_stretch, split_frames
from mvrecon.detail.grid import SurfaceTexels
from mvrecon.detail.stage import split_groups
from mvrecon.fit.result import load_fit


def _plane(M: int, su: float = 1.0, sv: float = 1.0, angle: float = 0.0) -> SurfaceTexels:
    c, s = np.cos(angle), np.sin(angle)
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    du = np.tile(Rz @ [su * 0.2, 0, 0], (M, 1))
    dv = np.tile(Rz @ [0, sv * 0.2, 0], (M, 1))
    return SurfaceTexels(np.zeros((M, 3)), np.tile([0, 0, 1.0], (M, 1)), du, dv)


def test_principal_stretch_sees_compression_not_motion():
    M = 5
    assert np.allclose(principal_log_stretch(_plane(M), _plane(M, angle=0.7)), 0, atol=1e-9)
    got = principal_log_stretch(_plane(M), _plane(M, sv=0.9, angle=0.3))
    assert np.allclose(got, -np.log(0.9), atol=1e-6), got
    assert np.allclose(principal_log_stretch(_plane(M), _plane(M, su=1.08)), np.log(1.08), atol=1e-6)


def _two_frame_truth(R: int, rng):
    """Identity detail (pores and lines everywhere), an expression wrinkle set in frame 1's upper
    half, and each frame's own solve: its truth plus its own noise."""
    identity = gaussian_filter(rng.standard_normal((R, R)), 1.0) * 20e-6
    y = np.arange(R)[:, None] * np.ones((1, R))
    upper = (y < R / 2).astype(np.float64)
    wrinkle = 60e-6 * np.sin(2 * np.pi * y / 12.0) * gaussian_filter(upper, 3.0)
    own = np.stack([identity, identity + wrinkle]) + rng.normal(0, 1e-6, (2, R, R))
    return identity, wrinkle, upper, own.astype(np.float32)


def test_identity_is_shared_and_the_wrinkle_stays_in_its_frame():
    rng = np.random.default_rng(0)
    R = 96
    identity, wrinkle, upper, own = _two_frame_truth(R, rng)
    # frame 1's expression region: its upper half (frame 0 is neutral)
    E = np.stack([np.zeros((R, R)), gaussian_filter(upper, 2.0)]).astype(np.float32)
    got_id, frames = split_frames(own, E)
    lower = slice(R // 2 + 8, None)
    top = slice(0, R // 2 - 8)
    # the identity: the same in both frames where neither is in expression, and the truth's
    assert np.abs(frames[0][lower] - frames[1][lower]).max() < 1e-9
    assert np.corrcoef(got_id.ravel(), identity.ravel())[0, 1] > 0.95
    # in the upper half it comes from frame 0, the relaxed one: no wrinkle in the identity
    assert abs(np.corrcoef(got_id[top].ravel(), wrinkle[top].ravel())[0, 1]) < 0.1
    # frame 1 keeps its wrinkle, frame 0 does not get it
    d1 = (frames[1] - got_id)[top].ravel()
    d0 = (frames[0] - got_id)[top].ravel()
    assert np.corrcoef(d1, wrinkle[top].ravel())[0, 1] > 0.95
    assert np.abs(d0).max() < 1e-9
    # a plain mean (the stage before) halves the wrinkle into both frames
    assert np.corrcoef(own.mean(0)[top].ravel(), wrinkle[top].ravel())[0, 1] > 0.5


def test_expression_regions_of_a_two_frame_fit(detail_session, ict_model):
    """A fit of two frames, neutral and an expression of the model: the neutral frame has no
    expression region, the expressive one has one, and the split keeps a wrinkle put in that
    frame's own band inside it and out of the identity."""
    head = load_fit(detail_session / "fit", ict_model)
    beta = np.zeros((2, head.beta.shape[1]), np.float32)
    beta[1] = head.beta[0] * 3.0  # the session's expression, stronger
    two = dataclasses.replace(
        head,
        beta=beta,
        R=np.repeat(head.R[:1], 2, 0),
        t=np.repeat(head.t[:1], 2, 0),
        groups=["f000", "f001"],
    )
    size = 256
    grid = face_grid(two, size)
    rng = np.random.default_rng(1)
    identity, wrinkle, _, _ = _two_frame_truth(size, rng)
    # the wrinkle where frame 1's surface is strained (what split_groups will find), anywhere else 0
    _, E0, _ = split_groups(two, PRESETS["default"], size, np.zeros((2, size, size), np.float32), [0, 1])
    assert E0[0][grid.mask].max() < 1e-6, "the neutral frame has no expression region"
    region = E0[1] > 0.99
    frac = float(region[grid.mask].mean())
    print("expression region fraction", frac)
    assert 0.01 < frac < 0.9
    own = np.stack([identity, identity + wrinkle * region]).astype(np.float32)
    own += rng.normal(0, 1e-6, own.shape).astype(np.float32)
    got_id, E, frames = split_groups(two, PRESETS["default"], size, own * grid.mask, [0, 1])
    m = grid.mask
    assert np.corrcoef(got_id[m], identity[m])[0, 1] > 0.95
    inside = m & region
    assert np.corrcoef((frames[1] - got_id)[inside], wrinkle[inside])[0, 1] > 0.95
    assert np.abs((frames[0] - got_id)[m]).max() < 1e-9


def test_a_two_frame_session_shares_its_identity_detail(detail_session_2f, ict_model):
    """Rendered session, two frames, the truth's fine layer the same in both (the synthetic heads
    have no expression wrinkles of their own): the stage recovers it as the identity, both frames
    carry it alike outside their expression regions, and the export's displacement is it."""
    from mvrecon.detail import load_detail, run
    from mvrecon.session import load_session

    from test_detail import CFG, _corr, _truth_on_grid

    res = run(CFG, load_session(detail_session_2f))
    maps = res.maps
    assert maps.fine.shape[0] == 2 and maps.identity is not None and maps.expression is not None
    size = maps.size
    fine_true, wrinkles, _ = _truth_on_grid(detail_session_2f, ict_model, size)
    c = _corr(maps.identity[wrinkles], fine_true[wrinkles])
    print(
        "identity wrinkle correlation", c, {k: g.get("expression_fraction") for k, g in res.summary["groups"].items()}
    )
    assert c > 0.5, c
    relaxed = wrinkles & (maps.expression.max(0) == 0)
    assert relaxed.sum() > 100
    assert np.abs(maps.fine[0][relaxed] - maps.fine[1][relaxed]).max() < 1e-9
    assert np.abs(maps.fine[0][relaxed] - maps.identity[relaxed]).max() < 1e-9
    back = load_detail(detail_session_2f / "detail")
    assert back.identity is not None and (back.shared == maps.identity).all()
