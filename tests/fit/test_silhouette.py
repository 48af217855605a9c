"""The silhouette term: the face's profile where it is the head's outline against the backdrop
lies on the person's outline in the photo."""

from __future__ import annotations

import numpy as np
import torch

from mvrecon.fit.losses import silhouette_loss
from mvrecon.fit.losses.silhouette import outline_vertices, profile_candidates, sample_map, signed_distance
from mvrecon.fit.params import HeadGeometry
from mvrecon.render import rasterize, vertex_visibility

import scenario


def disc_sdf(S: int, c: float, r: float) -> torch.Tensor:
    y, x = np.mgrid[0:S, 0:S].astype(np.float64)
    return torch.as_tensor(np.hypot(x - c, y - c) - r)[None]


def on_circle(c: float, r: float, n: int = 40) -> torch.Tensor:
    t = torch.linspace(0, 2 * np.pi, n + 1, dtype=torch.float64)[:-1]
    return torch.stack([c + r * torch.cos(t), c + r * torch.sin(t)], -1)[None]


def test_sample_map_is_bilinear():
    m = torch.arange(16, dtype=torch.float64).reshape(1, 4, 4)
    px = torch.tensor([[[1.5, 2.0], [0.0, 0.0], [3.0, 3.0]]], dtype=torch.float64)
    torch.testing.assert_close(sample_map(m, px), torch.tensor([[9.5, 0.0, 15.0]], dtype=torch.float64))


def test_silhouette_loss_pulls_the_outline_onto_the_boundary():
    S, c, r = 64, 31.5, 20.0
    sdf, scale, on = disc_sdf(S, c, r), torch.tensor([40.0], dtype=torch.float64), torch.ones(1, 40, dtype=torch.bool)
    assert silhouette_loss(on_circle(c, r), on, sdf, scale).item() < 1e-8
    out = on_circle(c, r + 3.0).requires_grad_(True)
    loss = silhouette_loss(out, on, sdf, scale)
    assert loss.item() > 1e-4
    loss.backward()
    radial = ((out.detach() - c) * out.grad).sum(-1)
    assert (radial > 0).all()  # descent moves every point inwards
    # beyond the limit (a tenth of the face size, 4 px here) a point is someone else's outline
    assert silhouette_loss(on_circle(c, r + 6.0), on, sdf, scale).item() == 0
    # the target is the vertex's own distance to the mesh's outline: 3 px out, on a mesh whose
    # outline is 3 px further out still, is where it belongs
    offset = torch.full((1, 40), 3.0, dtype=torch.float64)
    assert silhouette_loss(on_circle(c, r + 3.0), on, sdf, scale, offset=offset).item() < 1e-8
    # a view's few outline vertices weigh as few, not as a whole view's
    few = torch.zeros(1, 40, dtype=torch.bool)
    few[0, :2] = True
    assert silhouette_loss(on_circle(c, r + 3.0), few, sdf, scale).item() < loss.item() / 10


def test_a_nose_standing_out_too_far_is_seen_on_the_side_views_outline(ict_model):
    """The true head in four views (+-50 degrees), the person's outline taken from its render: the
    outline vertices of the true head sit on it; the same head with its nose 3 mm longer is far
    from it, and the term's descent pulls the nose back (the photometric term has no gradient at
    an occluding contour, so before this term no cue but the landmarks saw the nose's length)."""
    model = ict_model
    cams = scenario.rig(4, size=(256, 256), focal=750.0)
    world, _ = scenario.head(model)
    geom = HeadGeometry(model)
    K = torch.tensor(np.stack([c.K for c in cams]))
    w2c = torch.tensor(np.stack([c.world_to_cam for c in cams]))
    S = 256

    def person(w):
        fr = rasterize(torch.as_tensor(w)[None].expand(4, -1, -1), geom.faces, K, w2c, S, S)
        return torch.as_tensor(np.stack([signed_distance(m) for m in fr.mask.numpy()]), dtype=torch.float64)

    sdf = person(world)
    x = model.mean[:, 0]
    idx = torch.as_tensor(profile_candidates(model))
    scale = torch.full((4,), 40.0, dtype=torch.float64)

    def loss_of(w):
        wv = torch.as_tensor(w)[None].expand(4, -1, -1).clone().requires_grad_(True)
        vis = vertex_visibility(wv.detach(), geom.faces, K, w2c, S, S)
        on, off = outline_vertices(wv.detach(), geom.faces, K, w2c, S, vis, idx)
        from mvrecon.fit.optimize import project

        loss = silhouette_loss(project(wv[:, idx], K, w2c), on, sdf, scale, offset=off)
        loss.backward()
        return loss.item(), on, wv.grad

    true_loss, on, _ = loss_of(world)
    # the side views see the profile, the middle ones do not
    counts = on.sum(1).tolist()
    assert counts[0] >= 20 and counts[3] >= 20, counts
    nose = model.part_labels == 6
    tip = np.zeros(len(world), bool)
    tip[nose] = np.abs(x[nose]) < 0.006
    fwd = (world[model.landmarks68[30]] - (world[model.landmarks68[36]] + world[model.landmarks68[45]]) / 2)
    n = np.cross(world[model.landmarks68[45]] - world[model.landmarks68[36]], world[model.landmarks68[8]] - world[model.landmarks68[27]])
    n = n / np.linalg.norm(n) * np.sign(n @ fwd)
    longer = world.copy()
    longer[nose] += 0.003 * n * np.exp(-((x[nose] / 0.012) ** 2))[:, None]
    long_loss, on_long, grad = loss_of(longer)
    assert long_loss > 10 * max(true_loss, 1e-9), (true_loss, long_loss)
    # descent (minus the gradient) on the nose's outline vertices points back into the face
    g = grad.sum(0).numpy()
    used = np.zeros(len(world), bool)
    used[idx.numpy()[on_long.any(0).numpy()]] = True
    assert (used & tip).sum() >= 3
    assert float((-g[used & tip] @ n).mean()) < 0
