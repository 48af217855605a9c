"""Fit configuration: the coarse-to-fine schedule is data (a tuple of stages), with named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Param = Literal[
    "alpha",
    "log_scale",
    "deform",
    "beta",
    "rot",
    "trans",
    "sh",
    "disp",
    "albedo",
    "bias",
    "cam_pose",
    "key_dir",
    "key",
    "spec",
]
Loss = Literal[
    "landmark",
    "prdl",
    "photo",
    "contour",
    "silhouette",
    "id_prior",
    "exp_prior",
    "deform_tv",
    "deform_tvstd",
    "deform_mag",
    "deform_bend",
    "disp_tv",
    "disp_mag",
    "disp_consistency",
    "mask_iou",
    "consistency",
    "cam_prior",
]


@dataclass(frozen=True)
class Stage:
    """One step of the schedule."""

    name: str
    """Shown in progress bars and loss curves."""
    iters: int
    """Adam steps."""
    params: tuple[str, ...]
    """Parameters this stage frees (the others stay fixed)."""
    weights: dict[str, float]
    """Loss name -> weight (absent or 0: not computed)."""
    lr: dict[str, float] = field(default_factory=dict)
    """Per-parameter learning rates (defaults in :data:`DEFAULT_LR`)."""
    requires: tuple[str, ...] = ()
    """Stages whose result this one refines: when one of them was reverted, this one is skipped
    (a displacement fitted on a head whose photometric stage was undone explains that stage's
    residuals, and the albedo and light it frees make the held-out pixels look better anyway)."""


DEFAULT_LR: dict[str, float] = {
    "alpha": 0.05,
    "log_scale": 0.002,
    "deform": 2e-4,
    "beta": 0.02,
    "rot": 0.003,
    "trans": 0.0005,
    "sh": 0.02,
    "disp": 5e-5,
    "albedo": 0.03,
    "bias": 0.002,
    "cam_pose": 1e-4,
    "key_dir": 0.005,
    "key": 0.01,
    "spec": 0.01,
}

_PRIORS = {"id_prior": 1e-6, "exp_prior": 1e-6}


def _schedule(scale: float) -> tuple[Stage, ...]:
    """The schedule: landmarks place and shape the head, then the photometric term refines identity
    and expression, and only then does the deformation map join (along the normal, smooth by a
    bending energy), so that it explains what the linear model cannot instead of competing with
    identity and expression for what it can. The deformation stage keeps the head's pose where the
    photometric stage left it: free, the map traded shape for placement (the head slid by a
    millimetre while the map pushed the face back) and some fits ended 0.4-0.6 mm worse than the
    photometric stage (bench/fit.py --realism, ``--variants freepose`` measures the earlier
    setting). The cameras' correction goes on in it (:func:`with_camera_correction`; zero-mean, it
    cannot move the head as a whole). No displacement stage: :func:`with_displacement` says why.

    No contour term (it was 0.5 in the photometric stages until the eleventh session): it kept the
    outermost visible cheek and jaw vertices of each row inside the cues' face mask, and that
    mask's edge is mostly no image edge but where the cues' own landmark-fitted head ends, so it
    pulled the fit back towards that head. Without it the realism table's default error fell on
    seven of eleven rows (4 views: scan 0.784 -> 0.572 mm, seed 7 0.958 -> 0.878; clean rung mean
    0.308 -> 0.299) and rose by at most 0.019 mm on the others (seed 8); ``--variants contour``
    fits with it.

    The silhouette term (eleventh session) takes its place with evidence of the photo's own: where
    the face's profile (nose, lips, chin: within 2 cm of the midline) is the head's outline against
    the backdrop in a view, it lies on the outline of the person in the photo (MediaPipe's selfie
    segmentation refined by colour, :func:`mvrecon.fit.evidence.person_distance`). The photometric
    term has no gradient at an occluding contour (a ray either hits the surface or not), so before
    it nothing saw how far the nose stands out in the side views: the landmark stage set it and
    kept it (seed 7, 4 views: the nose 2.07 -> 0.93 mm). ``--variants nosilhouette`` fits
    without it."""
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731
    photo = {"landmark": 0.05, "prdl": 0.02, "photo": 1.0, "silhouette": 1.0, **_PRIORS}
    return (
        Stage("rigid", n(40), ("rot", "trans"), {"landmark": 1.0}),
        Stage("shape", n(240), ("rot", "trans", "alpha", "beta"), {"landmark": 1.0, **_PRIORS}),
        Stage("photo", n(120), ("rot", "trans", "alpha", "beta", "sh", "albedo", "bias"), photo),
        Stage(
            "deform",
            n(60),
            ("beta", "sh", "albedo", "bias", "deform"),
            {**photo, "deform_bend": 0.03, "deform_mag": 1e-4},
        ),
    )


#: Schedule length of each preset as it was before the ninth session (``best`` twice ``default``'s):
#: the legacy presets and the displacement stage keep it.
_LEGACY_SCALE = {"fast": 0.5, "default": 1.0, "best": 2.0}


def _displacement_stage(scale: float) -> Stage:
    """The fit's own displacement stage (:func:`with_displacement`)."""
    return Stage(
        "detail",
        max(1, int(round(30 * scale))),
        ("sh", "albedo", "bias", "disp"),
        {"photo": 1.0, "disp_tv": 0.5, "disp_mag": 0.05, "disp_consistency": 0.5},
        requires=("photo",),
    )


def _schedule_legacy(scale: float) -> tuple[Stage, ...]:
    """The schedule before the fit was made to hold on real heads (a free 3D deformation map in the
    photometric stage); kept to measure against (:func:`legacy`)."""
    # Once the shape is in the basin, the multi-view photometric term is the strongest geometric
    # cue (a calibrated rig makes it multi-view stereo); landmarks and PRDL come from detected cues
    # whose bias is a few pixels, so after the shape stage they only hold the fit in place.
    # PRDL only joins with the photometric term, at a small weight: the cues' part masks are the
    # rendering of a head the cues stage fits to the same landmarks (plus colour edges for brows
    # and upper lip), so they restate the landmarks through a head that is further off than the
    # fit's own, and at more weight they pull the fit towards that head. It stays because the
    # method states it; with masks of an independent face parser (register_parser), try
    # "prdl": 0.3 in the shape stage too.
    # The shape stage is long because the 478 embedded landmarks keep improving it, and it is
    # cheap (no rendering). bench/fit.py (its ablation rows) measures each of these choices.
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731
    return (
        Stage("rigid", n(40), ("rot", "trans"), {"landmark": 1.0}),
        Stage(
            "shape",
            n(240),
            ("rot", "trans", "alpha", "beta"),
            {"landmark": 1.0, **_PRIORS},
        ),
        Stage(
            "photo",
            n(160),
            ("rot", "trans", "alpha", "beta", "sh", "albedo", "deform"),
            {
                "landmark": 0.05,
                "prdl": 0.02,
                "photo": 1.0,
                "contour": 0.5,
                **_PRIORS,
                "deform_tv": 1e-2,
                "deform_mag": 1e-4,
            },
        ),
        Stage(
            "detail",
            n(30),
            ("sh", "albedo", "disp"),
            {"photo": 1.0, "disp_tv": 0.5, "disp_mag": 0.05, "disp_consistency": 0.5},
        ),
    )


@dataclass(frozen=True)
class FitConfig:
    """Settings of the fit stage."""

    preset: Literal["fast", "default", "best"] = "default"
    """Named preset these settings came from."""
    mode: Literal["auto", "per_view", "per_frame"] = "auto"
    """Expression/pose per view (MV-HRN) or per frame (synchronized rig); auto: the rig decides."""
    crop_size: int = 384
    """Side of the square face crop every view is fitted at, pixels. The photometric term sees the
    face at this size: at 256 (the default before the ninth session) a 1024x768 photo's face was
    halved and the realism table's default fit was 0.03-0.37 mm worse (bench/fit.py --realism)."""
    anchor_grid: int = 24
    """PRDL anchors per side of the crop."""
    mask_points: int = 1500
    """At most this many farthest-point-sampled pixels per part mask."""
    deform_res: int = 64
    """Deformation map resolution (3 x R x R)."""
    disp_res: int = 256
    """Displacement map resolution (1 x R x R)."""
    albedo_res: int = 256
    """UV albedo resolution during the fit (the texture stage bakes a larger one)."""
    visibility_every: int = 10
    """Recompute vertex visibility every this many steps."""
    lr_warmup: int = 20
    """Every stage's learning rates ramp up linearly over its first this many steps (0: from the
    first step at full rate). Adam's first steps are full-size in every parameter at once: without
    the ramp the photometric stages first climbed (the deformation stage's loss rose by a fifth
    over its first 15 steps) and ended higher (seed 7, 4 views: with the ramp the photometric and
    deformation stages ended 22 % and 29 % lower); with it the realism table's default error
    fell on eight of nine rows (bench/fit.py --realism, ``--variants nowarmup``). It costs
    ``fast`` (60 photometric steps) most of its camera correction
    (tests/fit/test_camera_correction.py, README)."""
    schedule: tuple[Stage, ...] = field(default_factory=lambda: _schedule(1.0))
    """The coarse-to-fine stages."""
    seed: int = 0
    """Seed for anything random."""
    dense_landmarks: bool = True
    """The landmark term on MediaPipe's 478 points through the model's landmark embedding (when
    the model has one and the cues have the points), else on the 68 iBUG points."""
    landmark_view_outlier: float = 3.0
    """After each landmark stage, views whose median landmark error exceeds this many times the
    median over views (plus 0.02 face widths) leave the landmark term; 0 keeps every view."""
    divergence_factor: float = 1e3
    """Stop with an error when the total loss exceeds its stage start by this factor."""
    deform_kind: Literal["normal", "free"] = "normal"
    """Deformation map along the normal of the neutral surface (bounded per region) or a free 3D offset."""
    photo_truncate: float = 0.15
    """Truncated L1 photometric norm: a pixel's colour distance counts up to this much (0: plain)."""
    skin_evidence: bool = True
    """Pixels whose colour says they are not skin (hair, beard, brows, highlights, backdrop) leave the photometric term."""
    part_cuts: tuple[str, ...] = ()
    """Parts whose PRDL masks are redrawn from the photo's colour, seeded by the cue masks
    (:func:`mvrecon.fit.evidence.part_cuts`): evidence whose errors do not follow the landmarks'."""
    heldout_fraction: float = 0.125
    """Share of the face pixels held out of the photometric term to judge the stages after the landmark ones."""
    stage_check: bool = True
    """Revert a stage that makes the held-out evidence worse (or folds the surface), and say so in the summary."""
    key_light: bool = False
    """The image model gains a key light beside the SH ambient: the colour its cast shadows take
    away (shadows cast by the fitted head, refreshed with the visibility) and a Blinn-Phong
    specular lobe (exponent :attr:`spec_exponent`); see :func:`with_key_light`."""
    shared_light: bool = False
    """One SH light per frame, shared by its views (each keeps a per-channel gain)."""
    camera_gauge: str = "mean"
    """Which motion shared by the cameras' corrections is taken away (it is the head's pose): their
    mean (``"mean"``), or the motion whose removal leaves each camera the smallest drift of its own
    (``"drift"``: a rotation about its own centre and a shift of it, in units of a typical drift,
    also the prior's units; :func:`mvrecon.fit.optimize.fix_gauge`). The second is the most likely
    split when each camera drifts on its own and, with the drift known, puts the head nearer the
    truth (0.60 against 0.84 mm on random 4-camera rigs), but the fits do not follow. With the
    prior at 3e-4 (bench/fit.py --realism full --variants driftgauge) it is better at 8 views
    (0.693 -> 0.676 mm), within the fit's chance spread at 4 (0.588 -> 0.575), worse at 2 views on
    two subjects of three (mean 1.155 -> 1.153) and on the clean rung (0.336 / 0.221 -> 0.388 /
    0.243: a camera's pan costs a quarter of what the mean gauge's prior charges, and with no drift
    to find the fit spends pans on what the model cannot explain), so ``"mean"`` stays."""
    key_shadows: bool = True
    """With the key light: its cast shadows too (else only its specular lobe)."""
    spec_exponent: float = 40.0
    """Blinn-Phong exponent of the key light's specular lobe."""
    consistency_slack: float | None = None
    """When set, the stage check also reverts a stage that raises the cross-view photo-consistency
    score (1 - ZNCC, :mod:`.consistency`) by more than this. Off by default: on the realism
    ladder's full rung (cameras drifted since calibration) stages that made the surface worse
    still improved it."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def corrects_cameras(self) -> bool:
        """Some stage fits the per-camera pose correction (:func:`with_camera_correction`)."""
        return any("cam_pose" in st.params for st in self.schedule)

    def uses(self, loss: str) -> bool:
        """Some stage of the schedule weighs ``loss``."""
        return any(st.weights.get(loss) for st in self.schedule)

    def without(self, *losses: str, params: tuple[str, ...] = ()) -> FitConfig:
        """A copy with some losses (and parameters) switched off in every stage (ablations)."""
        sched = []
        for st in self.schedule:
            w = {k: v for k, v in st.weights.items() if k not in losses}
            ps = tuple(p for p in st.params if p not in params)
            if ps and w:
                sched.append(dataclasses.replace(st, weights=w, params=ps))
        return dataclasses.replace(self, schedule=tuple(sched))


def with_camera_correction(
    cfg: FitConfig, prior: float = 1e-4, stages: tuple[str, ...] = ("photo", "deform")
) -> FitConfig:
    """``cfg`` whose ``stages`` also fit a per-camera pose correction (``cam_pose``: a rotation
    about the head and a translation per camera, zero-mean over the cameras so that the rig as a
    whole stays where its calibration put it), held by a prior of weight ``prior`` in units of a
    typical drift (0.1 degree, 1 mm). A rig's cameras move by that much between the board shots
    and the capture, and views that disagree by a millimetre or two pull the surface apart; the
    photometric stage sees it (the landmarks do not: a correction fitted to them alone left the
    error where it was). The deformation stage goes on correcting them (since the twelfth session;
    until then it kept them where the photometric stage left them): the cameras' sideways drift is
    recovered to within 0.1-0.25 mm at the end of the photometric stage, and the map's finer surface
    lets the views agree better on it (bench/fit.py --realism full, 4 views: 0.628 / 0.566 / 0.612
    -> 0.605 / 0.562 / 0.598 mm; ``--variants camphoto`` fits as before). The corrected
    cameras go to the texture and detail stages (:attr:`mvrecon.fit.result.FittedHead.camera_correction`). A stage that has it already is
    left as it is."""
    sched = []
    for st in cfg.schedule:
        if st.name in stages and "cam_pose" not in st.params:
            st = dataclasses.replace(st, weights={**st.weights, "cam_prior": prior}, params=st.params + ("cam_pose",))
        sched.append(st)
    return dataclasses.replace(cfg, schedule=tuple(sched))


def with_displacement(cfg: FitConfig) -> FitConfig:
    """``cfg`` with the fit's own displacement stage at the end (``detail``: a per-vertex height
    along the normal at :attr:`FitConfig.disp_res`, with the appearance, on the photometric term
    alone). Not in the presets since the ninth session: the stage check reverted it in every fit of
    the realism table and of the clean rung (it explained the held-out pixels worse), and the
    pipeline's detail stage (:mod:`mvrecon.detail`) recovers the mid and fine bands at the photos'
    full resolution. Kept to measure against (``bench/fit.py --realism --variants disp``). A
    ``cfg`` that has it already is returned as it is."""
    if any(st.name == "detail" for st in cfg.schedule):
        return cfg
    st = _displacement_stage(_LEGACY_SCALE.get(cfg.preset, 1.0))
    if cfg.key_light:
        st = dataclasses.replace(st, params=st.params + KEY_LIGHT_PARAMS)
    return dataclasses.replace(cfg, schedule=cfg.schedule + (st,))


def without_camera_correction(cfg: FitConfig) -> FitConfig:
    """``cfg`` with the calibrated cameras as they are (what :func:`with_camera_correction` adds, taken away)."""
    sched = tuple(
        dataclasses.replace(
            st,
            weights={k: v for k, v in st.weights.items() if k != "cam_prior"},
            params=tuple(p for p in st.params if p != "cam_pose"),
        )
        for st in cfg.schedule
    )
    return dataclasses.replace(cfg, schedule=sched)


def with_consistency(cfg: FitConfig, weight: float = 0.2, cameras: bool = True, prior: float = 1e-3) -> FitConfig:
    """``cfg`` with the cross-view photo-consistency term (:mod:`.consistency`) in its photometric
    and deformation stages and, with ``cameras``, a per-camera pose correction
    (:func:`with_camera_correction`, here with ``prior``). Not a preset: on the realism ladder's
    full rung it lowered the consistency score below the true surface's and raised the surface
    error (bench/fit.py's ablation row)."""
    sched = []
    for st in cfg.schedule:
        if st.name in ("photo", "deform"):
            st = dataclasses.replace(st, weights={**st.weights, "consistency": weight})
        sched.append(st)
    cfg = dataclasses.replace(cfg, schedule=tuple(sched))
    if cameras:
        cfg = without_camera_correction(cfg)
        cfg = with_camera_correction(cfg, prior, stages=("photo", "deform"))
    return cfg


#: The key light's parameters (:attr:`FitConfig.key_light`).
KEY_LIGHT_PARAMS = ("key_dir", "key", "spec")


def with_key_light(cfg: FitConfig, light_iters: int = 60) -> FitConfig:
    """``cfg`` whose photometric stages also fit a key light (:attr:`FitConfig.key_light`): its
    direction, the colour its shadows take away and its specular colour, per view. A ``light``
    stage of ``light_iters`` steps first fits the appearance alone (SH, albedo, bias, key light)
    on the landmark stages' head, so that the surface does not bend towards highlights and
    shadows while the light is still learning them. A ``cfg`` that fits one already is returned
    as it is."""
    if cfg.key_light:
        return cfg
    sched: list[Stage] = []
    for st in cfg.schedule:
        if st.weights.get("photo"):
            if not any(s.name == "light" for s in sched) and light_iters > 0:
                sched.append(Stage("light", light_iters, ("sh", "albedo", "bias") + KEY_LIGHT_PARAMS, {"photo": 1.0}))
            st = dataclasses.replace(st, params=st.params + KEY_LIGHT_PARAMS)
        sched.append(st)
    return dataclasses.replace(cfg, schedule=tuple(sched), key_light=True)


def with_refinement(cfg: FitConfig, iters: int = 120, lr_scale: float = 0.3) -> FitConfig:
    """``cfg`` followed by a ``refine`` stage of ``iters`` steps: identity, expression, the
    deformation map and the appearance together, at ``lr_scale`` times their learning rates, on
    the deformation stage's terms, the pose and the cameras where the earlier stages left them
    (at the full learning rates the check reverted it on the two sessions it was tried on, whose
    true error it had raised). Like every stage after the landmark ones it is judged on the
    held-out evidence and reverted when that gets worse (the held-out pixels' error by more than
    0.2 %, :meth:`mvrecon.fit.optimize.Fitter.judge`), so the fit it ends with is ``cfg``'s own
    result or one that evidence does not reject. Not a preset: the held-out pixels accepted it
    where it raised the true error (``best`` was ``default`` and this stage in the ninth session;
    with the learning-rate ramp it raised the realism table's error on six of nine rows, by up
    to 0.078 mm; bench/fit.py --realism ``--variants refine``)."""
    deform = next(st for st in cfg.schedule if st.name == "deform")
    params = tuple(dict.fromkeys(("alpha",) + tuple(p for p in deform.params if p not in ("rot", "trans", "cam_pose"))))
    weights = {k: v for k, v in deform.weights.items() if k != "cam_prior"}
    lr = {p: deform.lr.get(p, DEFAULT_LR[p]) * lr_scale for p in params}
    return dataclasses.replace(cfg, schedule=cfg.schedule + (Stage("refine", iters, params, weights, lr=lr),))


def without_key_light(cfg: FitConfig) -> FitConfig:
    """``cfg`` without the key light (the Lambertian SH image model): no ``light`` stage, no key
    light parameters (what :func:`with_key_light` adds, taken away)."""
    sched = tuple(
        dataclasses.replace(st, params=tuple(p for p in st.params if p not in KEY_LIGHT_PARAMS))
        for st in cfg.schedule
        if st.name != "light"
    )
    return dataclasses.replace(cfg, schedule=sched, key_light=False)


def legacy(name: str = "default") -> FitConfig:
    """Preset ``name`` as it was before the fit was made to hold on real heads: a free 3D deformation
    in the photometric stage, a plain robust photometric term over every face pixel, no stage
    check, the face crops of then (kept to measure against)."""
    scale = _LEGACY_SCALE[name]
    return dataclasses.replace(
        PRESETS[name],
        crop_size={"fast": 192, "default": 256, "best": 384}[name],
        anchor_grid={"fast": 16, "default": 24, "best": 32}[name],
        mask_points={"fast": 800, "default": 1500, "best": 3000}[name],
        visibility_every=5 if name == "best" else 10,
        schedule=_schedule_legacy(scale),
        deform_kind="free",
        photo_truncate=0.0,
        skin_evidence=False,
        heldout_fraction=0.0,
        stage_check=False,
        key_light=False,
        lr_warmup=0,
    )


#: Every preset fits a key light beside the SH ambient (:func:`with_key_light`): a studio's key
#: light casts shadows and makes highlights that a Lambertian SH model can only explain by bending
#: the surface (bench/realism.py, the ``skin`` factor). And every preset corrects the rig's
#: cameras in its photometric and deformation stages (:func:`with_camera_correction`): cameras that moved since
#: their calibration pull the surface apart (bench/fit.py --realism, the ``calib`` factor).
#: ``best`` fits as ``default`` does (the pipeline's ``best`` differs in its other stages): no
#: slower fit measured better on every subject. Until the ninth session it was a fit of its own
#: (a 384 px crop, twice the steps), which at 512 px ended worse than the 384 px ``default`` on two
#: of three 2-view subjects; in the ninth it was ``default`` and a refinement stage the held-out
#: evidence judges (:func:`with_refinement`), which once every stage's learning rates ramp up
#: (:attr:`FitConfig.lr_warmup`) raised the true error on six of nine rows of the realism table
#: (by up to 0.078 mm) while the held-out pixels accepted it (bench/fit.py --realism, ``--variants
#: refine``).
PRESETS: dict[str, FitConfig] = {
    "fast": with_key_light(
        with_camera_correction(
            FitConfig(preset="fast", crop_size=192, anchor_grid=16, mask_points=800, schedule=_schedule(0.5))
        ),
        light_iters=30,
    ),
    "default": with_key_light(with_camera_correction(FitConfig())),
    "best": with_key_light(with_camera_correction(FitConfig(preset="best"))),
}


def preset(name: str, **overrides: Any) -> FitConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)
