"""Face-part segmentation behind one interface, so a learned parser can replace the default.

The default, :class:`LandmarkParser`, rasterises :func:`mvrecon.parts.part_label_image` from the
iBUG-68 landmarks: the same polygons label the face model's vertices, so the PRDL targets (these
masks) and sources (the model's labelled vertices) follow one definition. The eyes and lips are
the 68-point polygons, not MediaPipe's denser contours, for that reason. Its one departure: where
a turned head hides the jaw line, the skin reaches the face's silhouette (see the class).
``polygons`` (:class:`PolygonParser`) is the shared definition without that.

A learned parser (e.g. a BiSeNet face parser with user-supplied weights) implements
:class:`FaceParser` and must return the codes of :data:`mvrecon.parts.PART_CODES`, with the skin
cut above the brows as the landmark parser does (see ``mvrecon/parts.py``); register it with
:func:`register_parser` to make it selectable by name in :class:`mvrecon.cues.CuesConfig`.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..parts import PART_CODES, _frame, part_label_image, part_polygons
from .detect import FaceCues
from .visibility import mesh_triangles


@runtime_checkable
class FaceParser(Protocol):
    """Turns an image and its face cues into a part label image."""

    #: Short name, recorded in the outputs (a cached view is redone when it changes).
    name: str

    def parse(self, image: np.ndarray, cues: FaceCues) -> np.ndarray:
        """uint8 labels ``(H, W)`` with :data:`mvrecon.parts.PART_CODES`, for an RGB uint8 image
        ``(H, W, 3)`` and the face found in it. Must not modify ``image``."""
        ...


class PolygonParser:
    """Part masks exactly as the shared iBUG-68 polygons (:func:`mvrecon.parts.part_label_image`)."""

    name = "polygons"

    def parse(self, image: np.ndarray, cues: FaceCues) -> np.ndarray:
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

    def parse(self, image: np.ndarray, cues: FaceCues) -> np.ndarray:
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


def _fill(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, np.round(np.asarray(poly) * (1 << _SHIFT)).astype(np.int32)[None], 1, lineType=cv2.LINE_8, shift=_SHIFT)
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


_PARSERS: dict[str, Callable[[], FaceParser]] = {"landmarks": LandmarkParser, "polygons": PolygonParser}


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
