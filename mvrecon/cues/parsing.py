"""Face-part segmentation behind one interface, so a learned parser can replace the default.

The default, :class:`LandmarkParser`, rasterises :func:`mvrecon.parts.part_label_image` from the
iBUG-68 landmarks: the same polygons label the face model's vertices, so the PRDL targets (these
masks) and sources (the model's labelled vertices) follow one definition. The eyes and lips are
the 68-point polygons, not MediaPipe's denser contours, for that reason.

A learned parser (e.g. a BiSeNet face parser with user-supplied weights) implements
:class:`FaceParser` and must return the codes of :data:`mvrecon.parts.PART_CODES`, with the skin
cut above the brows as the landmark parser does (see ``mvrecon/parts.py``); register it with
:func:`register_parser` to make it selectable by name in :class:`mvrecon.cues.CuesConfig`.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..parts import part_label_image
from .detect import FaceCues


@runtime_checkable
class FaceParser(Protocol):
    """Turns an image and its face cues into a part label image."""

    #: Short name, recorded in the outputs (a cached view is redone when it changes).
    name: str

    def parse(self, image: np.ndarray, cues: FaceCues) -> np.ndarray:
        """uint8 labels ``(H, W)`` with :data:`mvrecon.parts.PART_CODES`, for an RGB uint8 image
        ``(H, W, 3)`` and the face found in it. Must not modify ``image``."""
        ...


class LandmarkParser:
    """Part masks as the shared iBUG-68 polygons (:mod:`mvrecon.parts`)."""

    name = "landmarks"

    def parse(self, image: np.ndarray, cues: FaceCues) -> np.ndarray:
        h, w = image.shape[:2]
        if (w, h) != tuple(cues.image_size):
            raise ValueError(f"image is {w}x{h} but the cues were found on {cues.image_size[0]}x{cues.image_size[1]}")
        return part_label_image(cues.points68, h, w)


_PARSERS: dict[str, Callable[[], FaceParser]] = {"landmarks": LandmarkParser}


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
