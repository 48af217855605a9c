"""Realism factors of synthetic sessions: what real captures have and renders of the model lack.

Each factor is off in ``Realism()`` (today's "clean" sessions, byte for byte) and can be turned on
alone or with others; ``Realism.parse("full")`` turns on all of them at realistic strength.

=========  ==========================================================================================
factor     what it adds
=========  ==========================================================================================
head       a head the model did not make: a registered head scan (``--head-mesh``), or for a random
           subject a smooth random 3D deformation of several mm, larger than the mid bumps and
           outside the model's span
skin       a key light with soft cast shadows beside the SH ambient, and a Blinn-Phong specular
           lobe (oilier nose, forehead and chin, wet eyes), in linear light
hair       a hair cap with a hairline, stubble or a short beard on the lower face, a shirt collar
camera     sRGB response, per-camera exposure and white balance, vignetting, defocus blur, shot and
           read noise, JPEG at quality 85-95
calib      the rig the session ships differs from the rig that took the photos (the rig drifted
           after calibration: the board shots agree with the shipped rig, the photos do not)
backdrop   a cluttered, out-of-focus room behind the subject instead of a studio backdrop
annotator  the scan's 68 landmarks placed the way a person annotates iBUG points on a scan (brows
           on the upper brow edge, jaw on the frontal silhouette), not the model's landmark vertices
=========  ==========================================================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..cameras import Camera, Rig
from ..errors import MvreconError
from ..geometry import axis_angle_to_matrix

FACTORS: tuple[str, ...] = ("head", "skin", "hair", "camera", "calib", "backdrop", "annotator")


@dataclass(frozen=True)
class Realism:
    """Which realism factors a synthetic session has, and how strong (see the module docstring)."""

    head: bool = False
    """Off-model head: the registered ``head_mesh`` when given, else a smooth random deformation."""
    deform_mm: float = 5.0
    """Peak of the smooth random deformation of a random subject's head (mm)."""
    skin: bool = False
    """Key light with soft shadows and a specular lobe."""
    specular: float = 1.0
    """Multiplier of the specular strength (1 = oily T-zone of a studio portrait)."""
    hair: bool = False
    """Hair cap, stubble or beard, shirt collar."""
    camera: bool = False
    """sRGB response, exposure, white balance, vignetting, defocus, noise, JPEG."""
    calib: bool = False
    """The shipped rig differs from the render rig."""
    calib_mm: float = 1.0
    """Camera centre error of the shipped rig (mm, per camera)."""
    calib_deg: float = 0.1
    """Camera rotation error of the shipped rig (degrees, per camera)."""
    backdrop: bool = False
    """Cluttered out-of-focus backgrounds."""
    annotator: bool = False
    """Scan landmarks in an annotator's convention."""

    def __post_init__(self) -> None:
        if not (
            0 <= self.deform_mm <= 30
            and 0 <= self.specular <= 5
            and 0 <= self.calib_mm <= 50
            and 0 <= self.calib_deg <= 5
        ):
            raise MvreconError(
                "synth: realism strengths out of range (deform_mm 0-30, specular 0-5, calib_mm 0-50, calib_deg 0-5)"
            )

    @property
    def factors(self) -> tuple[str, ...]:
        """The factors that are on, in :data:`FACTORS` order."""
        return tuple(f for f in FACTORS if getattr(self, f))

    @property
    def name(self) -> str:
        on = self.factors
        return "clean" if not on else "full" if len(on) == len(FACTORS) else "+".join(on)

    @staticmethod
    def parse(spec: str) -> Realism:
        """``clean``, ``full`` or a comma list of factor names (``skin,camera``); ``full-X`` is all
        but factor X."""
        spec = (spec or "clean").strip().lower()
        if spec == "clean":
            return Realism()
        if spec == "full":
            return Realism(**{f: True for f in FACTORS})
        if spec.startswith("full-"):
            drop = spec[5:]
            if drop not in FACTORS:
                raise MvreconError(f"synth: unknown realism factor {drop!r} (factors: {', '.join(FACTORS)})")
            return Realism(**{f: f != drop for f in FACTORS})
        names = [s.strip() for s in spec.split(",") if s.strip()]
        bad = [n for n in names if n not in FACTORS]
        if bad:
            raise MvreconError(
                f"synth: unknown realism factor(s) {', '.join(bad)} "
                f"(use clean, full, full-FACTOR or a comma list of {', '.join(FACTORS)})"
            )
        return Realism(**{n: True for n in names})

    def replace(self, **changes) -> Realism:
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------ head


def smooth_deformation(
    points: np.ndarray,
    anchors: np.ndarray,
    normals: np.ndarray,
    rng: np.random.Generator,
    peak_mm: float,
    n_blobs: int = 10,
) -> np.ndarray:
    """A smooth random displacement field (P, 3) metres evaluated at ``points`` (P, 3), model space.

    Gaussian blobs of 2-4.5 cm radius centred on random ``anchors`` (skin vertices, (A, 3), with
    unit ``normals``); each pushes mostly along its anchor's normal (in or out) with a tangential
    part, so cheeks, jaw, nose and brow ridge change shape in ways no identity mode spans. Scaled so
    that the largest displacement is ``peak_mm``. Smooth over the eyes, so they move with their
    sockets.
    """
    pick = rng.choice(len(anchors), size=n_blobs, replace=False)
    c = anchors[pick]
    sig = rng.uniform(0.02, 0.045, n_blobs)
    amp = rng.uniform(0.4, 1.0, n_blobs) * rng.choice([-1.0, 1.0], n_blobs)
    tang = rng.standard_normal((n_blobs, 3)) * 0.35
    dirs = normals[pick] * amp[:, None] + tang
    field = np.zeros((len(points), 3))
    for k in range(n_blobs):  # ten blobs: a loop over blobs, not points
        w = np.exp(-np.sum((points - c[k]) ** 2, 1) / (2 * sig[k] ** 2))
        field += w[:, None] * dirs[k]
    peak = np.linalg.norm(field, axis=1).max()
    return field / max(peak, 1e-12) * peak_mm * 1e-3


# ------------------------------------------------------------------------------ calibration error


def perturb_rig(rig: Rig, rng: np.random.Generator, centre_mm: float, rot_deg: float) -> Rig:
    """A copy of ``rig`` whose every camera centre is moved by ``centre_mm`` (random direction) and
    rotated by ``rot_deg`` (random axis) about its centre; intrinsics unchanged."""
    cams = []
    for cam in rig.cameras:
        d = rng.standard_normal(3)
        d *= centre_mm * 1e-3 / np.linalg.norm(d)
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        dR = axis_angle_to_matrix(axis * np.radians(rot_deg))
        R = dR @ cam.world_to_cam[:3, :3]
        c = cam.center + d
        w2c = np.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = -R @ c
        cams.append(dataclasses.replace(cam, world_to_cam=w2c))
    return dataclasses.replace(rig, cameras=tuple(cams))


def rig_difference(a: Rig, b: Rig) -> tuple[np.ndarray, np.ndarray]:
    """Per camera: centre distance (mm) and rotation angle (degrees) between two rigs."""
    mm, deg = [], []
    for ca, cb in zip(a.cameras, b.cameras):
        mm.append(np.linalg.norm(ca.center - cb.center) * 1e3)
        R = ca.world_to_cam[:3, :3] @ cb.world_to_cam[:3, :3].T
        deg.append(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
    return np.array(mm), np.array(deg)


# ------------------------------------------------------------------------------ camera


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB [0, 1] (IEC 61966-2-1)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_decode(x: np.ndarray) -> np.ndarray:
    """sRGB [0, 1] -> linear [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


@dataclass(frozen=True)
class CameraResponse:
    """One camera's imaging: ``exposure`` (scalar) and ``white_balance`` (3,) gains on linear light,
    ``vignetting`` (relative fall-off at the image corner), ``blur_px`` (Gaussian defocus sigma,
    pixels), ``shot``/``read`` noise (std of linear signal: sqrt(shot^2 * x + read^2)), sRGB
    encoding, JPEG ``quality``."""

    exposure: float
    white_balance: np.ndarray
    vignetting: float
    blur_px: float
    shot: float
    read: float
    quality: int

    @staticmethod
    def sample(rng: np.random.Generator, width: int) -> CameraResponse:
        wb = np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)])
        return CameraResponse(
            exposure=float(rng.uniform(0.75, 1.3)),
            white_balance=wb,
            vignetting=float(rng.uniform(0.15, 0.35)),
            blur_px=float(rng.uniform(0.4, 1.1) * width / 1024),
            shot=float(rng.uniform(0.006, 0.012)),
            read=float(rng.uniform(0.002, 0.004)),
            quality=int(rng.integers(85, 96)),
        )

    def as_array(self) -> np.ndarray:
        """(10,) exposure, white balance (3), vignetting, blur, shot, read, quality, 0."""
        return np.array(
            [self.exposure, *self.white_balance, self.vignetting, self.blur_px, self.shot, self.read, self.quality, 0.0]
        )

    def apply(self, linear: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
        """Linear radiance (H, W, 3) -> 8-bit sRGB image (before JPEG)."""
        import cv2

        h, w = linear.shape[:2]
        img = linear * (self.exposure * self.white_balance)[None, None]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        cx, cy = camera.K[0, 2], camera.K[1, 2]
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        img = img * (1.0 - self.vignetting * r2)[..., None]
        if self.blur_px > 0:
            img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), self.blur_px).astype(np.float64)
        img = np.clip(img, 0, None)
        img = img + rng.standard_normal(img.shape) * np.sqrt(self.shot**2 * img + self.read**2)
        return np.clip(np.round(srgb_encode(img) * 255), 0, 255).astype(np.uint8)

    def jpeg(self, image: np.ndarray) -> bytes:
        """JPEG bytes of an RGB uint8 image at this camera's quality (libjpeg is deterministic)."""
        import cv2

        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise MvreconError("synth: JPEG encoding failed")
        return buf.tobytes()


# ------------------------------------------------------------------------------ backdrop


def clutter_backdrop(camera: Camera, rng: np.random.Generator, blur_px: float | None = None) -> np.ndarray:
    """A room behind the subject (H, W, 3) in [0, 1] (display units), out of focus: a textured wall,
    shelves and furniture edges, objects of every colour (skin-like ones too), a bright window."""
    import cv2

    h, w = camera.height, camera.width
    wall = np.array([rng.uniform(0.35, 0.8), rng.uniform(0.3, 0.75), rng.uniform(0.25, 0.7)])
    img = np.broadcast_to(wall, (h, w, 3)).astype(np.float32).copy()
    tex = cv2.resize(rng.standard_normal((h // 6 + 1, w // 6 + 1)).astype(np.float32), (w, h))
    img *= (1 + 0.06 * tex)[..., None]
    # large furniture blocks and shelves
    for _ in range(int(rng.integers(5, 10))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        bw, bh = int(rng.integers(w // 10, w // 2)), int(rng.integers(h // 12, h // 2))
        col = rng.uniform(0.05, 0.9, 3)
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), tuple(float(c) for c in col), -1)
    # a window: a bright, slightly blue rectangle
    x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h // 2))
    cv2.rectangle(img, (x0, y0), (x0 + w // 4, y0 + h // 3), (0.95, 0.97, 1.0), -1)
    # small objects: books, bottles, plants, some of skin tone
    for _ in range(int(rng.integers(25, 45))):
        col = rng.uniform(0.05, 0.95, 3) if rng.uniform() > 0.2 else np.array([0.8, 0.6, 0.5]) * rng.uniform(0.6, 1.1)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.uniform() < 0.5:
            ax = (int(rng.integers(5, w // 14)), int(rng.integers(5, h // 10)))
            cv2.ellipse(img, (cx, cy), ax, float(rng.uniform(0, 180)), 0, 360, tuple(float(c) for c in col), -1)
        else:
            cv2.rectangle(
                img,
                (cx, cy),
                (cx + int(rng.integers(4, w // 30)), cy + int(rng.integers(h // 20, h // 6))),
                tuple(float(c) for c in col),
                -1,
            )
    # edges of shelves: thin dark lines
    for _ in range(int(rng.integers(3, 7))):
        y = int(rng.integers(0, h))
        cv2.line(img, (0, y), (w, y + int(rng.integers(-h // 20, h // 20))), (0.1, 0.08, 0.06), int(rng.integers(2, 6)))
    blur = (rng.uniform(2.0, 4.0) * w / 1024) if blur_px is None else blur_px
    img = cv2.GaussianBlur(img, (0, 0), blur)
    return np.clip(img, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------ annotator landmarks


def annotator_landmarks(
    verts: np.ndarray,
    faces: np.ndarray,
    landmarks: np.ndarray,
    head_to_world: np.ndarray,
    brow_lift_mm: tuple[float, float] = (4.0, 6.0),
    rng: np.random.Generator | None = None,
    max_slide_mm: float = 12.0,
) -> np.ndarray:
    """The 68 landmarks (68, 3) as a person annotates iBUG points on the scan (world, metres).

    ``verts`` (V, 3), ``faces`` (F, 3): the scan surface (world); ``landmarks`` (68, 3) the model's
    landmark vertices on it; ``head_to_world`` gives the face's axes (model +Y up, +Z out).
    - brows (17-26) on the upper edge of the brow: moved up along the surface by 4-6 mm;
    - jaw (0-16) on the frontal silhouette: slid along the surface, away from the face's centre
      line (down for the chin points), until the surface turns edge-on to a frontal view
      (its normal perpendicular to the face's forward axis), at most ``max_slide_mm``;
    - nose tip (30) on the most forward point of the nose (up to 1 mm away);
    the others (eye corners, lips, nostrils) where the model puts them.
    """
    from ..geometry import vertex_normals
    from ..render.raycast import MeshQuery

    rng = np.random.default_rng(0) if rng is None else rng
    R = head_to_world[:3, :3]
    up, fwd, right = R[:, 1], R[:, 2], R[:, 0]
    q = MeshQuery(np.asarray(verts, np.float64), np.asarray(faces, np.int64))
    vn = vertex_normals(np.asarray(verts, np.float64), np.asarray(faces, np.int64))
    out = np.array(landmarks, np.float64)

    def normal_at(p: np.ndarray) -> np.ndarray:
        cp = q.closest(p[None])
        f = faces[cp.triangles[0]]
        n = vn[f].mean(0)
        return n / np.linalg.norm(n)

    def slide(p: np.ndarray, direction: np.ndarray, dist: float, stop=None) -> np.ndarray:
        step = 0.5e-3
        moved = 0.0
        while moved < dist - 1e-9:
            n = normal_at(p)
            t = direction - (direction @ n) * n
            if np.linalg.norm(t) < 1e-6 or (stop is not None and stop(n)):
                break
            p = q.closest((p + step * t / np.linalg.norm(t))[None]).points[0]
            moved += step
        return p

    lifts = rng.uniform(*brow_lift_mm, 10) * 1e-3
    for k, i in enumerate(range(17, 27)):
        out[i] = slide(out[i], up, lifts[k])
    centre = landmarks[27:31].mean(0)
    for i in range(17):
        side = (landmarks[i] - centre) @ right
        if 6 <= i <= 10:
            d = -up + 0.0 * right
        else:
            d = right * np.sign(side) - 0.3 * up
        out[i] = slide(out[i], d / np.linalg.norm(d), max_slide_mm * 1e-3, stop=lambda n: abs(n @ fwd) < 0.05)
    # nose tip: the most forward surface point near the model's
    p = out[30]
    near = verts[np.linalg.norm(verts - p, axis=1) < 1e-3]
    if len(near):
        out[30] = near[np.argmax(near @ fwd)]
    return out


__all__ = [
    "FACTORS",
    "Realism",
    "CameraResponse",
    "smooth_deformation",
    "perturb_rig",
    "rig_difference",
    "srgb_encode",
    "srgb_decode",
    "clutter_backdrop",
    "annotator_landmarks",
]
