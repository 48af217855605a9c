"""RealityCapture (RealityScan) camera files: one XMP sidecar per image (Alignment > Export >
Registration > Metadata (XMP)), ``<image stem>.xmp`` beside the image, as rigs.

The parts read and written (namespace ``xcr`` = http://www.capturingreality.com/ns/xcr/1.1#)::

    <rdf:Description xcr:Version="3" xcr:PosePrior="locked" xcr:Coordinates="absolute"
        xcr:DistortionModel="brown3t2" xcr:FocalLength35mm="..." xcr:Skew="0" xcr:AspectRatio="1"
        xcr:PrincipalPointU="..." xcr:PrincipalPointV="..." ...>
      <xcr:Rotation>9 numbers, world to camera, row-major</xcr:Rotation>
      <xcr:Position>the camera centre in the world</xcr:Position>
      <xcr:DistortionCoeficients>k1 k2 k3 k4 t1 t2</xcr:DistortionCoeficients>
    </rdf:Description>

Conventions (RealityCapture's "XMP camera math"): the camera frame is OpenCV's (``x = [R | -R C]
X``, x right, y down, z forward); the Brown distortion of ``x/z, y/z`` with tangential terms in
Brown's order (``t1 (r2 + 2 x^2) + 2 t2 x y``: OpenCV's ``p2, p1``); the image is measured in
units of its larger side ``S = max(W, H)``, centred, spanning -0.5..0.5 along that side, so
``fx = FocalLength35mm / 36 * S``, ``fy = fx * AspectRatio``, ``cx = W/2 + PrincipalPointU * S -
0.5`` (the -0.5: mvrecon's pixel centres are at integers), ``cy`` likewise with ``V``. The XMP
carries no image size: it is read from the image beside it (or given). ``k4`` (the ``brown4``
models), a skew, and division or fisheye models have no place in mvrecon's camera model and are
refused.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from ..cameras import Camera, Rig
from ..errors import InputError
from ..io import write_text
from .metashape import brown_distortion, parse_floats, parse_xml

XCR = "http://www.capturingreality.com/ns/xcr/1.1#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
#: Distortion models whose coefficients map onto OpenCV's k1, k2, p1, p2, k3.
BROWN_MODELS = ("none", "brown3", "brown3t2", "brown4", "brown4t2", "perspective")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".JPG", ".JPEG", ".PNG", ".TIF", ".TIFF")


def _value(desc: ET.Element, name: str, default: float | None = None) -> float:
    """An ``xcr:`` value, an attribute of the description or a child element."""
    raw = desc.get(f"{{{XCR}}}{name}")
    if raw is None:
        child = desc.find(f"{{{XCR}}}{name}")
        raw = None if child is None else child.text
    if raw is None:
        if default is None:
            raise ValueError(f"no xcr:{name}")
        return default
    return float(parse_floats(raw, 1, f"xcr:{name}")[0])


def camera_from_xmp(root: ET.Element, name: str, width: int, height: int) -> Camera:
    """One camera from a parsed XMP sidecar; ValueError for what it cannot hold."""
    desc = next(
        (
            d
            for d in root.iter(f"{{{RDF}}}Description")
            if any(k.startswith(f"{{{XCR}}}") for k in d.attrib) or d.find(f"{{{XCR}}}Rotation") is not None
        ),
        None,
    )
    if desc is None:
        raise ValueError("no xcr: camera description (not a RealityCapture XMP)")
    model = desc.get(f"{{{XCR}}}DistortionModel", "brown3")
    if model not in BROWN_MODELS:
        raise ValueError(
            f"distortion model {model!r} is not one mvrecon's OpenCV camera can hold "
            f"(use one of {', '.join(BROWN_MODELS)})"
        )
    rot, pos = desc.find(f"{{{XCR}}}Rotation"), desc.find(f"{{{XCR}}}Position")
    if rot is None or pos is None:
        raise ValueError("no xcr:Rotation and xcr:Position (the image is not registered)")
    R = parse_floats(rot.text, 9, "xcr:Rotation").reshape(3, 3)
    C = parse_floats(pos.text, 3, "xcr:Position")
    if _value(desc, "Skew", 0.0) != 0.0:
        raise ValueError("xcr:Skew is not zero; mvrecon's cameras have no skew")
    coeffs = desc.find(f"{{{XCR}}}DistortionCoeficients")
    k = parse_floats(coeffs.text, 6, "xcr:DistortionCoeficients") if coeffs is not None else np.zeros(6)
    if k[3] != 0.0:
        raise ValueError(f"k4 = {k[3]:g} (xcr:DistortionCoeficients); mvrecon's cameras have k1..k3")
    side = max(width, height)
    fx = _value(desc, "FocalLength35mm") / 36.0 * side
    if not fx > 0:
        raise ValueError("xcr:FocalLength35mm must be positive")
    K = np.array(
        [
            [fx, 0.0, width / 2 + _value(desc, "PrincipalPointU", 0.0) * side - 0.5],
            [
                0.0,
                fx * _value(desc, "AspectRatio", 1.0),
                height / 2 + _value(desc, "PrincipalPointV", 0.0) * side - 0.5,
            ],
            [0.0, 0.0, 1.0],
        ]
    )
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ C
    return Camera(name, width, height, K, np.array([k[0], k[1], k[5], k[4], k[2]]), M)


def camera_to_xmp(cam: Camera) -> str:
    """The XMP sidecar of one camera (pose locked, distortion model brown3t2)."""
    d = brown_distortion(cam, "RealityCapture")
    side = max(cam.width, cam.height)
    attrs = {
        "Version": "3",
        "PosePrior": "locked",
        "Coordinates": "absolute",
        "DistortionModel": "brown3t2",
        "FocalLength35mm": cam.K[0, 0] * 36.0 / side,
        "Skew": 0.0,
        "AspectRatio": cam.K[1, 1] / cam.K[0, 0],
        "PrincipalPointU": (cam.K[0, 2] + 0.5 - cam.width / 2) / side,
        "PrincipalPointV": (cam.K[1, 2] + 0.5 - cam.height / 2) / side,
        "CalibrationPrior": "locked",
        "CalibrationGroup": "-1",
        "DistortionGroup": "-1",
        "InTexturing": "1",
        "InMeshing": "1",
    }

    def fmt(v) -> str:
        return v if isinstance(v, str) else repr(float(v))

    def nums(a) -> str:
        return " ".join(repr(float(x)) for x in np.ravel(a))

    attr_text = " ".join(f'xcr:{k}="{fmt(v)}"' for k, v in attrs.items())
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        f'  <rdf:RDF xmlns:rdf="{RDF}">\n'
        f'    <rdf:Description xmlns:xcr="{XCR}" {attr_text}>\n'
        f"      <xcr:Rotation>{nums(cam.R)}</xcr:Rotation>\n"
        f"      <xcr:Position>{nums(cam.center)}</xcr:Position>\n"
        f"      <xcr:DistortionCoeficients>{nums([d[0], d[1], d[4], 0.0, d[3], d[2]])}</xcr:DistortionCoeficients>\n"
        "    </rdf:Description>\n  </rdf:RDF>\n</x:xmpmeta>\n"
    )


def _image_size(xmp: Path) -> tuple[int, int]:
    from ..io import image_size

    for ext in IMAGE_EXTENSIONS:
        p = xmp.with_suffix(ext)
        if p.is_file():
            return image_size(p)
    raise InputError("no image beside it to give the camera's image size (put the image there, or give the size)", xmp)


def rig_from_xmp_folder(folder: Path, size: tuple[int, int] | None = None) -> Rig:
    """Every ``*.xmp`` in ``folder`` as one camera named by the file's stem, its image size from
    the image beside it (same stem) or ``size`` (W, H)."""
    files = sorted(p for p in folder.glob("*.xmp") if p.is_file())
    if not files:
        raise InputError("no .xmp files", folder)
    cams = []
    for p in files:
        w, h = size if size is not None else _image_size(p)
        try:
            cams.append(camera_from_xmp(parse_xml(p, "XMP file"), p.stem, w, h))
        except ValueError as e:
            raise InputError(f"RealityCapture XMP: {e}", p) from None
    return Rig(cameras=tuple(cams), name=folder.name or "rig")


def write_xmp_folder(rig: Rig, folder: Path) -> None:
    """``<camera>.xmp`` for every camera into an existing folder."""
    for c in rig.cameras:
        write_text(folder / f"{c.name}.xmp", camera_to_xmp(c))
