"""Face-part segmentation behind one interface, so a learned parser can replace the default.

PRDL compares these masks with the face model's per-vertex part labels (the shared iBUG-68
polygons of :mod:`mvrecon.parts`, drawn in the model's frontal view), so the parsers aim at that
definition.

- ``model`` (:class:`ModelParser`, the default through ``auto`` when the face model has a
  landmark embedding, ``mvrecon model embed``): the model fitted to the view's 478 MediaPipe
  points, its own part labels rendered in the view's camera, then the brows, eye openings and
  lips cut along the image's colour edges (:mod:`mvrecon.cues.refine`). In a session, the views
  of a synchronized frame are fitted together (:meth:`ModelParser.parse_frame`: one head for all
  of them, rendered in each camera). On ``mvrecon.synth`` sessions (``bench/cues.py synth --seeds
  1 2 3 --parsers model model:view surface``, 18 views, frontal to ~60 degrees) it beats
  ``surface`` on every part, and the frame fits beat the views' own fits on all but the brows.
- ``surface`` (:class:`SurfaceParser`, ``auto``'s fallback): the polygons drawn in the face's own
  frontal view and carried to the image through MediaPipe's 3D mesh, with occlusion.
- ``landmarks`` (:class:`LandmarkParser`): the polygons of the projected landmarks in the image,
  skin extended to the silhouette where a turned head hides the jaw line. Much faster.
- ``polygons`` (:class:`PolygonParser`): :func:`mvrecon.parts.part_label_image`, nothing else.

A learned parser (e.g. a BiSeNet face parser with user-supplied weights) implements
:class:`FaceParser` and must return the codes of :data:`mvrecon.parts.PART_CODES`, with the skin
cut above the brows as the landmark parser does (see ``mvrecon/parts.py``); register it with
:func:`register_parser` to make it selectable by name in :class:`mvrecon.cues.CuesConfig`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ..parts import PART_CODES, _frame, part_label_image, part_polygons
from ..threads import single_threaded
from .facemesh import FaceCues
from .visibility import mesh_triangles

if TYPE_CHECKING:
    from .modelfit import ViewFit

log = logging.getLogger(__name__)


@runtime_checkable
class FaceParser(Protocol):
    """Turns an image and its face cues into a part label image."""

    #: Short name, recorded in the outputs (a cached view is redone when it changes).
    name: str

    def parse(self, image: np.ndarray, cues: FaceCues, camera=None) -> np.ndarray:
        """uint8 labels ``(H, W)`` with :data:`mvrecon.parts.PART_CODES`, for an RGB uint8 image
        ``(H, W, 3)`` and the face found in it. ``camera``: the view's calibrated
        :class:`mvrecon.cameras.Camera` when known (parsers may ignore it). Must not modify
        ``image``."""
        ...


class FrameParser(FaceParser, Protocol):
    """A :class:`FaceParser` that also labels the views of one synchronized frame together
    (:meth:`ModelParser.parse_frame`)."""

    #: Per view of the last :meth:`parse_frame` call: whether it joined the shared fit.
    last_frame_views: list[bool]

    def parse_frame(self, images: list[np.ndarray], cues: list[FaceCues], cameras: list) -> list[np.ndarray]: ...


class PolygonParser:
    """Part masks exactly as the shared iBUG-68 polygons (:func:`mvrecon.parts.part_label_image`)."""

    name = "polygons"

    def parse(self, image: np.ndarray, cues: FaceCues, camera=None) -> np.ndarray:
        h, w = _check_size(image, cues)
        return part_label_image(cues.points68, h, w)


class LandmarkParser:
    """The shared iBUG-68 polygons, with the skin reaching the face's silhouette where the jaw
    line is hidden (the default parser).

    On a turned head the far half of the jaw line runs behind the cheek: its projected landmarks
    lie inside the visible face, and a polygon through them leaves the far cheek out, although
    the model's skin-labelled vertices there are visible up to the silhouette (and PRDL projects
    exactly those). So the skin is the jaw/brow polygon plus every pixel the projected MediaPipe
    mesh covers below the brow line (the line 0-17-...-26-16 continued outwards at the height of
    jaw points 0 and 16), outside the mouth opening. On a frontal face the mesh ends at the jaw
    line and this adds only the thin slivers between the oval and the polygon's chords.
    """

    name = "landmarks"

    def parse(self, image: np.ndarray, cues: FaceCues, camera=None) -> np.ndarray:
        h, w = _check_size(image, cues)
        labels = part_label_image(cues.points68, h, w)
        extra = mesh_silhouette(cues.points478, h, w) & _below_brows(cues.points68, h, w)
        extra &= labels == PART_CODES["background"]
        extra &= ~_fill(part_polygons(cues.points68)["mouth"], h, w)
        labels[extra] = PART_CODES["skin"]
        return labels


_SHIFT = 4  # sub-pixel bits for OpenCV rasterisation, as mvrecon.parts uses


def _check_size(image: np.ndarray, cues: FaceCues) -> tuple[int, int]:
    h, w = image.shape[:2]
    if (w, h) != tuple(cues.image_size):
        raise ValueError(f"image is {w}x{h} but the cues were found on {cues.image_size[0]}x{cues.image_size[1]}")
    return h, w


def _check_camera(camera, w: int, h: int) -> None:
    if (camera.width, camera.height) != (w, h):
        raise ValueError(f"camera is {camera.width}x{camera.height} but the image is {w}x{h} (camera {camera.name})")


def _fill(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(
        m, np.round(np.asarray(poly) * (1 << _SHIFT)).astype(np.int32)[None], 1, lineType=cv2.LINE_8, shift=_SHIFT
    )
    return m.astype(bool)


def mesh_silhouette(points478: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool: pixels covered by the projected 468-point face mesh (its outer outline
    filled), from MediaPipe points ``(478, >=2)`` in pixels.

    All triangle edges are drawn in one call and the outside is flood-filled from a border:
    overlapping triangles (folds of a turned head) would cancel out in a single even-odd
    ``fillPoly``.
    """
    import cv2

    tris, _ = mesh_triangles()
    xy = np.asarray(points478, np.float64)[:468, :2]
    # rasterise in the mesh's bounding box (plus a free border for the flood fill)
    x0, y0 = np.floor(xy.min(0)).astype(int) - 2
    x1, y1 = np.ceil(xy.max(0)).astype(int) + 3
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((xy - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)[tris]
    cv2.polylines(canvas, list(pts), True, 1, thickness=1, lineType=cv2.LINE_8, shift=_SHIFT)
    flood = np.zeros((canvas.shape[0] + 2, canvas.shape[1] + 2), np.uint8)
    cv2.floodFill(canvas, flood, (0, 0), 2)
    inside = canvas != 2
    out = np.zeros((height, width), bool)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0:cy1, cx0:cx1] = inside[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out


def _below_brows(lm68: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pixels below the skin's upper outline (jaw 0, brows 17-26, jaw 16), that outline being
    continued outwards level with jaw points 0 and 16 and everything far below it included."""
    right, down, _ = _frame(lm68)
    far = 4.0 * float(max(h, w))
    top = np.concatenate([lm68[[0]], lm68[17:27], lm68[[16]]], 0)
    poly = np.concatenate(
        [
            [lm68[0] - right * far],
            top,
            [lm68[16] + right * far, lm68[16] + right * far + down * far, lm68[0] - right * far + down * far],
        ],
        0,
    )
    return _fill(poly, h, w)


class ModelParser:
    """The face model's own part labels, seen through a fit of the model to the view's 478
    MediaPipe points (:mod:`mvrecon.cues.modelfit`, through the model's landmark embedding
    :mod:`mvrecon.cues.embedding`), with the brows, eye openings and lips then cut along the
    image's colour edges (:mod:`mvrecon.cues.refine`). The default when the model has an
    embedding: its outlines follow the definition PRDL's 3D side uses, with the occlusion of a
    turned head, and the colour cut adds what the landmarks do not know.

    ``camera``: the view's calibrated camera (perspective and distortion); without one, a
    distortion-free camera with the focal length :data:`mvrecon.cues.modelfit.DEFAULT_FOCAL`.
    """

    name = "model"

    def __init__(self, model, embedding, refine: bool = True):
        self.model = model
        self.embedding = embedding.check(model)
        self.refine = refine
        self.last_fit: ViewFit | None = None
        """The :class:`mvrecon.cues.modelfit.ViewFit` of the last :meth:`parse` call."""
        self.last_frame_views: list[bool] = []

    max_frame_rms: float = 3.0
    max_frame_miss: float = 0.1
    """A view whose points miss the frame's shared fit by more than ``max_frame_rms`` times the
    median view's RMS and by more than ``max_frame_miss`` of its face's size (a wrong face, a
    camera knocked after calibration: tens of pixels) is labelled on its own (see
    :meth:`parse_frame`). A turned view's MediaPipe points miss more than the others' (though well
    below ``max_frame_miss`` on the bench), but the frame's head is still the better answer there."""

    @classmethod
    def from_registry(cls, model_name: str = "ict", refine: bool = True) -> ModelParser:
        from ..errors import InputError
        from ..facemodel.registry import load_model
        from .embedding import find_embedding

        model = load_model(model_name)
        emb = find_embedding(model)
        if emb is None:
            raise InputError(
                f"face model '{model_name}' has no MediaPipe landmark embedding; "
                f"make it with: mvrecon model embed {model_name}"
            )
        return cls(model, emb, refine)

    def parse(self, image: np.ndarray, cues: FaceCues, camera=None) -> np.ndarray:
        from .modelfit import default_camera, fit_view, render_labels
        from .refine import refine_labels

        h, w = _check_size(image, cues)
        cam = camera if camera is not None else default_camera(w, h)
        _check_camera(cam, w, h)
        with single_threaded():  # small solves: a second BLAS thread only costs wake-ups
            fit = fit_view(self.model, self.embedding, cues.points478, cues.conf478, cam)
        self.last_fit = fit
        labels = render_labels(self.model, fit, cam)
        return refine_labels(image, labels) if self.refine else labels

    def parse_frame(self, images: list[np.ndarray], cues: list[FaceCues], cameras: list) -> list[np.ndarray]:
        """Labels of several views of one synchronized frame (calibrated ``cameras``, with their
        extrinsics): the model fitted to all the views' points at once
        (:func:`mvrecon.cues.modelfit.fit_views`: one identity, expression and pose), its labels
        rendered in each view, then cut along each image's colour edges. Each view's MediaPipe
        errors are its own, so the shared fit averages them out, and a turned view is held by
        the others where its own points are guesses (on ``bench/cues.py synth`` sessions of 6
        cameras the nose and the far eye gain IoU over :meth:`parse`).

        A view whose points disagree with the others' fit (:attr:`max_frame_miss`: a wrong face,
        a camera moved since calibration) is left out of the shared fit and labelled on its own.
        ``last_frame_views`` records, per view, whether it joined the shared fit."""
        from .modelfit import fit_view, fit_views, in_camera, render_labels, view_rms
        from .refine import refine_labels

        if not (len(images) == len(cues) == len(cameras)):
            raise ValueError("parse_frame needs one image, one FaceCues and one camera per view")
        for im, cu, cam in zip(images, cues, cameras):
            h, w = _check_size(im, cu)
            _check_camera(cam, w, h)
        views = [(cu.points478, cu.conf478, cam) for cu, cam in zip(cues, cameras)]
        with single_threaded():  # small solves: a second BLAS thread only costs wake-ups
            own = [fit_view(self.model, self.embedding, p, c, cam) for p, c, cam in views]
            joined = np.ones(len(views), bool)
            fit = None
            while joined.sum() >= 2:
                idx = np.flatnonzero(joined)
                fit = fit_views(self.model, self.embedding, [views[i] for i in idx], init=[own[i] for i in idx])
                rms = np.array([view_rms(self.model, self.embedding, fit, *views[i]) for i in idx])
                size = np.array([np.ptp(np.asarray(views[i][0])[:, :2], 0).max() for i in idx])  # face, px
                bad = (rms > self.max_frame_rms * float(np.median(rms))) & (rms > self.max_frame_miss * size)
                if not bad.any():
                    break
                joined[idx[np.argmax(np.where(bad, rms, -np.inf))]] = False  # the worst first, then refit
            if joined.sum() < 2:
                joined[:] = False
        self.last_frame_views = joined.tolist()
        out = []
        for i, (im, cam) in enumerate(zip(images, cameras)):
            vf = in_camera(fit, cam) if joined[i] and fit is not None else own[i]
            labels = render_labels(self.model, vf, cam)
            out.append(refine_labels(im, labels) if self.refine else labels)
        return out


def auto_parser() -> FaceParser:
    """``model`` when the default face model and its embedding are installed, else ``surface``."""
    from ..errors import InputError

    try:
        return ModelParser.from_registry()
    except (InputError, OSError) as e:
        log.warning("face parser 'model' unavailable (%s); using 'surface'", e)
        return SurfaceParser()


_PARSERS: dict[str, Callable[[], FaceParser]] = {
    "auto": auto_parser,
    "landmarks": LandmarkParser,
    "model": ModelParser.from_registry,
    "model-norefine": lambda: ModelParser.from_registry(refine=False),
    "polygons": PolygonParser,
    "surface": lambda: SurfaceParser(),
}


def register_parser(name: str, factory: Callable[[], FaceParser]) -> None:
    """Make a parser selectable by ``name`` (``factory`` builds it, e.g. loading weights)."""
    _PARSERS[name] = factory


def parser_names() -> tuple[str, ...]:
    return tuple(sorted(_PARSERS))


def get_parser(name: str) -> FaceParser:
    """The parser registered under ``name``; ``KeyError`` lists the known ones."""
    try:
        factory = _PARSERS[name]
    except KeyError:
        raise KeyError(f"unknown face parser {name!r} (known: {', '.join(parser_names())})") from None
    return factory()


# ------------------------------------------------------------------------------------------
# The surface parser: the shared polygons drawn on the face's own frontal view, carried to the
# image through the 3D mesh (the way the face model's vertex labels reach a rendered view).

#: MediaPipe mirror pairs (subject's right, left) spread over the face, for its left-right axis.
MIRROR_PAIRS: tuple[tuple[int, int], ...] = (
    (33, 263),
    (133, 362),
    (61, 291),
    (127, 356),
    (234, 454),
    (93, 323),
    (132, 361),
    (58, 288),
    (172, 397),
    (136, 365),
    (150, 379),
    (149, 378),
    (176, 400),
    (148, 377),
    (70, 300),
    (105, 334),
    (107, 336),
    (98, 327),
    (160, 387),
    (144, 373),
    (40, 270),
    (91, 321),
)


def frontal_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation ``R`` (3, 3) and centre ``c`` (3,) taking mesh points ``(478, 3)`` (image pixels,
    z away from the camera) to the face's own frontal frame: ``(p - c) @ R.T`` has x towards the
    subject's left (image right when frontal), y down the face, z into the face.

    The viewing axis is the normal of the face's best-fit plane (the mesh is broad across and
    shallow in depth), the left-right axis the mean of mirror-pair differences.
    """
    p = np.asarray(points, np.float64)[:468]
    c = p.mean(0)
    normal = np.linalg.svd(p - c, full_matrices=False)[2][2]
    if normal[2] < 0:  # the face is seen from the camera: its inward normal points away (+z)
        normal = -normal
    r_idx, l_idx = np.array(MIRROR_PAIRS).T
    lateral = (p[l_idx] - p[r_idx]).sum(0)
    lateral -= np.dot(lateral, normal) * normal
    lateral /= np.linalg.norm(lateral)
    down = np.cross(normal, lateral)  # right-handed: x right, y down, z forward
    return np.stack([lateral, down, normal]), c


def _eye_fans() -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Triangles closing the two eye openings (holes in MediaPipe's mesh): fans from an extra
    vertex per eye (indices 478 and 479, the centroid of the lid ring)."""
    from .visibility import LEFT_EYE_RING, RIGHT_EYE_RING

    tris = []
    for centre, ring in ((478, RIGHT_EYE_RING), (479, LEFT_EYE_RING)):
        for k in range(len(ring)):
            tris.append((centre, ring[k], ring[(k + 1) % len(ring)]))
    return np.asarray(tris, np.int64), [RIGHT_EYE_RING, LEFT_EYE_RING]


def _lookup_parts(points: np.ndarray, lm68: np.ndarray, max_side: int) -> np.ndarray:
    """Part codes ``(N,)`` of 2D points under the polygons of ``lm68``: the label image of the
    polygons (:func:`mvrecon.parts.part_label_image`, same paint order) rasterised once over
    their extent (at most ``max_side`` px across) and read at each point, nearest pixel."""
    lo = np.minimum(lm68.min(0), points.min(0)) - 2
    hi = np.maximum(lm68.max(0), points.max(0)) + 2
    k = min(1.0, max_side / float((hi - lo).max()))
    size = np.ceil((hi - lo) * k).astype(int) + 1
    raster = part_label_image((lm68 - lo) * k, int(size[1]), int(size[0]))
    ij = np.clip(np.round((points - lo) * k).astype(int), 0, size - 1)
    return raster[ij[:, 1], ij[:, 0]]


class SurfaceParser:
    """Part labels of the visible face surface, by where each visible point lies in the face's
    frontal view.

    The face model's vertex labels are the shared polygons (:mod:`mvrecon.parts`) of its frontal
    orthographic view, and a rendered view shows the labels of the vertices it sees. This parser
    does the same with the MediaPipe mesh: it turns the mesh to its frontal frame
    (:func:`frontal_frame`), takes the 68 landmarks and polygons there, casts a ray along the
    optical axis through every pixel of the face (Open3D), and labels each pixel by the part
    whose frontal polygon holds the surface point the ray hits first. So on a turned head the
    nose hides what it hides and parts follow the 3D surface, where polygons of projected
    landmarks (``landmarks``, ``polygons``) cut straight across it. MediaPipe's mesh has holes at
    the eyes (closed here with fans) and the mouth (left open: background, as the mouth is).

    ``max_grid``: rays per face side at most; larger faces are labelled on a coarser grid and
    upsampled (nearest), bounding the cost.
    """

    name = "surface"

    def __init__(self, max_grid: int = 320):
        self.max_grid = max_grid

    def parse(self, image: np.ndarray, cues: FaceCues, camera=None) -> np.ndarray:
        import cv2

        from ..render.raycast import MeshScene
        from .mapping import MP_TO_IBUG68

        h, w = _check_size(image, cues)
        fans, rings = _eye_fans()
        p = np.asarray(cues.points478, np.float64)
        verts = np.concatenate([p, [p[list(r)].mean(0) for r in rings]], 0)  # (480, 3)
        tris = np.concatenate([mesh_triangles()[0], fans], 0)
        R, c = frontal_frame(p)
        front = (verts - c) @ R.T  # frontal frame, x right, y down
        lm68 = MP_TO_IBUG68 @ front[:478, :2]

        # pixel grid over the mesh's bounding box, clipped to the image
        x0, y0 = np.maximum(np.floor(verts[:, :2].min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(verts[:, :2].max(0)).astype(int) + 1, [w, h])
        labels = np.zeros((h, w), np.uint8)
        if x1 <= x0 or y1 <= y0:
            return labels
        step = max(1, int(np.ceil(max(x1 - x0, y1 - y0) / self.max_grid)))
        gx = np.arange(x0, x1, step, dtype=np.float32)
        gy = np.arange(y0, y1, step, dtype=np.float32)
        xx, yy = np.meshgrid(gx, gy)
        z0 = float(verts[:, 2].min()) - 10.0
        rays = np.zeros((xx.size, 6), np.float32)
        rays[:, 0], rays[:, 1], rays[:, 2], rays[:, 5] = xx.ravel(), yy.ravel(), z0, 1.0

        hit = MeshScene(verts, tris).cast(rays)
        prim = hit.triangles
        ok = prim >= 0
        grid = np.zeros(xx.size, np.uint8)
        if ok.any():
            uv = hit.uv[ok].astype(np.float64)
            t = tris[prim[ok]]
            fp = (
                (1 - uv[:, :1] - uv[:, 1:]) * front[t[:, 0], :2]
                + uv[:, :1] * front[t[:, 1], :2]
                + uv[:, 1:] * front[t[:, 2], :2]
            )
            grid[ok] = _lookup_parts(fp, lm68, self.max_grid)
        grid = grid.reshape(xx.shape)
        if step > 1:
            grid = cv2.resize(grid, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        labels[y0:y1, x0:x1] = grid[: y1 - y0, : x1 - x0]
        return labels
