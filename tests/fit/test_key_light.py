"""The fit's key light: its direction read from the photos, and its soft cast shadows."""

from __future__ import annotations

import math

import numpy as np
import torch

from mvrecon.fit.optimize import key_direction, key_visibility


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    c = float((a / a.norm()) @ (b / b.norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def test_key_direction_points_at_the_light_whatever_the_albedo():
    rng = np.random.default_rng(0)
    light = torch.nn.functional.normalize(torch.tensor([0.4, 0.35, 0.85], dtype=torch.float64), dim=0)
    V, P = 2, 4000
    n = torch.from_numpy(rng.normal(size=(V, P, 3)))
    n[..., 2] = n[..., 2].abs() + 0.3          # a face's normals: towards the cameras (+z)
    n = torch.nn.functional.normalize(n, dim=-1)
    albedo = torch.from_numpy(rng.uniform(0.3, 0.8, (V, P, 1)))
    shade = 0.3 + 0.6 * (n @ light).clamp_min(0)[..., None]
    target = albedo * shade + torch.from_numpy(rng.normal(0, 0.01, (V, P, 3)))
    weight = torch.ones(V, P)
    d = key_direction(n, target, weight)
    assert d is not None and _angle_deg(d, light) < 12.0
    # another light, another answer: the estimate follows the photos
    other = torch.nn.functional.normalize(torch.tensor([-0.5, 0.1, 0.86], dtype=torch.float64), dim=0)
    target2 = albedo * (0.3 + 0.6 * (n @ other).clamp_min(0)[..., None])
    assert _angle_deg(key_direction(n, target2, weight), other) < 12.0
    # too few trusted pixels: no estimate
    assert key_direction(n, target, torch.zeros(V, P)) is None


def test_key_visibility_is_the_shadow_of_an_occluder():
    """A 10 mm square plate 10 mm above the plane z = 0 with the light straight above: points under
    it are in its shadow, points well beside it are lit, points at its shadow's edge partly."""
    h, s = 0.01, 0.005
    plate = torch.tensor([[-s, -s, h], [s, -s, h], [s, s, h], [-s, s, h]], dtype=torch.float64)[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.002, -0.003, 0.0], [0.02, 0.0, 0.0], [0.0, -0.03, 0.0],
                         [s, 0.0, 0.0]]], dtype=torch.float64)
    normals = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(pts)
    light = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    vis = key_visibility(plate, faces, pts, normals, light)[0]
    assert vis[0] == 0 and vis[1] == 0          # under the plate
    assert vis[2] == 1 and vis[3] == 1          # beside it
    assert 0 < vis[4] < 1                       # the penumbra: part of the light's cone passes
    # the light from the side moves the shadow: the point under the plate is lit
    side = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.3], dtype=torch.float64), dim=0)
    assert key_visibility(plate, faces, pts, normals, side)[0, 0] == 1


def test_key_light_config_is_added_once_and_taken_away_whole():
    """Every preset fits the key light; adding it again changes nothing, and taking it away gives
    back the preset as it was built without it (the Lambertian SH model, no light stage; the
    camera correction stays)."""
    import dataclasses

    from mvrecon.fit.config import (
        PRESETS,
        FitConfig,
        _schedule,
        preset,
        with_key_light,
        without_camera_correction,
        without_key_light,
    )

    cfg = preset("default")
    assert cfg.key_light and [s.name for s in cfg.schedule].count("light") == 1
    assert with_key_light(cfg) == cfg
    assert without_camera_correction(without_key_light(cfg)) == FitConfig()
    fast = without_camera_correction(without_key_light(PRESETS["fast"]))
    assert fast == dataclasses.replace(fast, schedule=_schedule(0.5)) and not fast.key_light
    assert with_key_light(without_key_light(cfg)) == cfg
