"""Agisoft Metashape camera files (File > Export > Export Cameras > Agisoft XML) as rigs.

Layout (Metashape 1.5 and later)::

    <document version="1.5.0"><chunk>
      <sensors><sensor id="0" label="cam0" type="frame">
        <resolution width="W" height="H"/>
        <calibration type="frame" class="adjusted">
          <resolution .../> <f/> <cx/> <cy/> [<b1/> <b2/>] [<k1/> .. <k4/>] [<p1/> .. <p4/>]
        </calibration></sensor></sensors>
      [<components><component id="0"><transform>rotation, translation, scale</transform></component></components>]
      <cameras><camera id="0" sensor_id="0" [component_id="0"] label="cam0.jpg">
        <transform>16 numbers: camera to chunk, row-major</transform></camera></cameras>
      [<transform><rotation/> <translation/> <scale/></transform>]   chunk to world
    </chunk></document>

Conventions (Metashape manual, appendix "Camera models"): the camera frame is OpenCV's (x right,
y down, z forward); with ``x = X/Z``, ``y = Y/Z``, ``r2 = x^2 + y^2``::

    x' = x (1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4) + (p1 (r2 + 2 x^2) + 2 p2 x y)
    y' = y (1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4) + (p2 (r2 + 2 y^2) + 2 p1 x y)
    u = W/2 + cx + x' (f + b1) + y' b2,    v = H/2 + cy + y' f

in image coordinates whose top-left pixel's centre is (0.5, 0.5). So OpenCV's ``p1, p2`` are
Metashape's ``p2, p1``, ``fx = f + b1``, ``fy = f``, and mvrecon's principal point (pixel centres
at integers) is ``W/2 + cx - 0.5``. ``k4``, ``p3``, ``p4`` and the skew ``b2`` have no place in
mvrecon's camera model: a file where they are not zero is refused rather than bent.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from ..cameras import Camera, Rig, invert_rigid
from ..errors import InputError
from ..io import open_regular

#: Camera files larger than this are refused (a studio rig's file is a few kB per camera).
MAX_XML_BYTES = 64 << 20


def parse_xml(path: Path, what: str) -> ET.Element:
    """The root element of a small XML file; document type declarations (entities) are refused."""
    try:
        with open_regular(path, what, MAX_XML_BYTES) as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read {what} ({e.strerror})", path) from None
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise InputError(f"{what} declares a document type or entities; refused", path)
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise InputError(f"not XML ({e})", path) from None


def brown_distortion(cam: Camera, program: str) -> np.ndarray:
    """The camera's 8 OpenCV coefficients (k1 k2 p1 p2 k3, then zeros) for a writer of
    ``program``'s Brown model; ValueError when the camera has skew or rational terms (k4..k6),
    which neither Metashape nor RealityCapture can hold."""
    if abs(cam.K[0, 1]) > 1e-12:
        raise ValueError(f"camera {cam.name!r}: skew is not written")
    d = np.zeros(8)
    d[: min(8, cam.dist.size)] = cam.dist[:8]
    if np.any(d[5:]):
        raise ValueError(f"camera {cam.name!r}: {program} has no rational distortion (k4..k6)")
    return d


def parse_floats(text: str | None, n: int, what: str) -> np.ndarray:
    """``n`` finite numbers from whitespace-separated ``text`` (an XML element's); ValueError
    naming ``what`` otherwise."""
    try:
        v = np.array([float(x) for x in (text or "").split()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{what} is not a list of numbers") from None
    if v.size != n or not np.all(np.isfinite(v)):
        raise ValueError(f"{what} needs {n} finite numbers, has {v.size}")
    return v


def _similarity(node: ET.Element | None, what: str) -> np.ndarray:
    """4x4 ``[s R | t]`` of a <transform> with <rotation>, <translation>, <scale> (each optional)."""
    M = np.eye(4)
    if node is None:
        return M
    r, t, s = node.find("rotation"), node.find("translation"), node.find("scale")
    R = parse_floats(r.text, 9, f"{what} rotation").reshape(3, 3) if r is not None else np.eye(3)
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) <= 0:
        raise ValueError(f"{what} rotation is not a rotation")
    scale = float(parse_floats(s.text, 1, f"{what} scale")[0]) if s is not None else 1.0
    if scale <= 0:
        raise ValueError(f"{what} scale must be positive")
    M[:3, :3] = scale * R
    if t is not None:
        M[:3, 3] = parse_floats(t.text, 3, f"{what} translation")
    return M


def _calibration(sensor: ET.Element) -> ET.Element | None:
    cals = sensor.findall("calibration")
    adjusted = [c for c in cals if c.get("class") == "adjusted"]
    chosen = adjusted or cals
    return chosen[0] if chosen else None


def _param(cal: ET.Element, name: str) -> float:
    node = cal.find(name)
    return 0.0 if node is None or not (node.text or "").strip() else float(parse_floats(node.text, 1, name)[0])


def _sensor_camera(sensor: ET.Element) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(width, height, K, dist) of a Metashape sensor."""
    label = sensor.get("label", sensor.get("id", "?"))
    cal = _calibration(sensor)
    if cal is None:
        raise ValueError(f"sensor {label!r} has no calibration (calibrate the cameras in Metashape first)")
    res = cal.find("resolution")
    if res is None:
        res = sensor.find("resolution")
    if res is None:
        raise ValueError(f"sensor {label!r} has no resolution")
    w, h = int(res.get("width", "0")), int(res.get("height", "0"))
    f = _param(cal, "f")
    if f <= 0:
        raise ValueError(f"sensor {label!r} has no focal length f")
    for name in ("b2", "k4", "p3", "p4"):
        if _param(cal, name) != 0.0:
            raise ValueError(
                f"sensor {label!r} has {name} = {_param(cal, name):g}, which mvrecon's OpenCV camera "
                "model cannot hold (fix it to zero in Metashape's camera calibration)"
            )
    K = np.array(
        [
            [f + _param(cal, "b1"), 0.0, w / 2 + _param(cal, "cx") - 0.5],
            [0.0, f, h / 2 + _param(cal, "cy") - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )
    dist = np.array([_param(cal, "k1"), _param(cal, "k2"), _param(cal, "p2"), _param(cal, "p1"), _param(cal, "k3")])
    return w, h, K, dist


def rig_from_metashape(root: ET.Element, name: str = "rig") -> Rig:
    """The cameras of a Metashape camera file's first chunk as a rig; a camera's name is its label
    without the file extension. Raises ValueError for a file it cannot read."""
    chunk = root.find("chunk") if root.tag == "document" else (root if root.tag == "chunk" else None)
    if chunk is None:
        raise ValueError("no <document><chunk>: not a Metashape camera file")
    sensors = {s.get("id"): s for s in chunk.iter("sensor")}
    components = {
        c.get("id"): _similarity(c.find("transform"), f"component {c.get('id')}") for c in chunk.iter("component")
    }
    chunk_to_world = _similarity(chunk.find("transform"), "chunk transform")
    cams = []
    for node in chunk.iter("camera"):
        label = node.get("label") or f"camera{node.get('id')}"
        cam_name = label.rsplit(".", 1)[0] if "." in label else label
        sensor = sensors.get(node.get("sensor_id"))
        if sensor is None:
            raise ValueError(f"camera {label!r} names sensor {node.get('sensor_id')!r}, which the file does not have")
        t = node.find("transform")
        if t is None:
            raise ValueError(f"camera {label!r} has no transform (not aligned in Metashape)")
        cam_to_chunk = parse_floats(t.text, 16, f"camera {label!r} transform").reshape(4, 4)
        if not np.allclose(cam_to_chunk[3], [0, 0, 0, 1]):
            raise ValueError(f"camera {label!r} transform's last row is not 0 0 0 1")
        comp = components.get(node.get("component_id"), np.eye(4))
        cam_to_world = chunk_to_world @ comp @ cam_to_chunk
        # the chunk's and components' scale makes the 3x3 block s R: the camera's axes are R
        s = np.cbrt(np.linalg.det(cam_to_world[:3, :3]))
        if not s > 0:
            raise ValueError(f"camera {label!r} transform is not a similarity")
        rigid = cam_to_world.copy()
        rigid[:3, :3] /= s
        if not np.allclose(rigid[:3, :3] @ rigid[:3, :3].T, np.eye(3), atol=1e-6):
            raise ValueError(f"camera {label!r} transform is not a rotation and a translation")
        w, h, K, dist = _sensor_camera(sensor)
        cams.append(Camera(cam_name, w, h, K, dist, invert_rigid(rigid)))
    if not cams:
        raise ValueError("the file has no cameras")
    return Rig(cameras=tuple(cams), name=name)


def rig_to_metashape(rig: Rig) -> str:
    """The rig as a Metashape camera file (one sensor per camera, no chunk transform)."""
    doc = ET.Element("document", version="1.5.0")
    chunk = ET.SubElement(doc, "chunk", label=rig.name, enabled="true")
    sensors = ET.SubElement(chunk, "sensors", next_id=str(len(rig)))
    cameras = ET.SubElement(chunk, "cameras", next_id=str(len(rig)), next_group_id="0")
    for i, c in enumerate(rig.cameras):
        d = brown_distortion(c, "Metashape")
        s = ET.SubElement(sensors, "sensor", id=str(i), label=c.name, type="frame")
        ET.SubElement(s, "resolution", width=str(c.width), height=str(c.height))
        cal = ET.SubElement(s, "calibration", {"type": "frame", "class": "adjusted"})
        ET.SubElement(cal, "resolution", width=str(c.width), height=str(c.height))
        values = {
            "f": c.K[1, 1],
            "cx": c.K[0, 2] + 0.5 - c.width / 2,
            "cy": c.K[1, 2] + 0.5 - c.height / 2,
            "b1": c.K[0, 0] - c.K[1, 1],
            "k1": d[0],
            "k2": d[1],
            "k3": d[4],
            "p1": d[3],
            "p2": d[2],
        }
        for k, v in values.items():
            ET.SubElement(cal, k).text = repr(float(v))
        cam = ET.SubElement(cameras, "camera", id=str(i), sensor_id=str(i), label=c.name)
        ET.SubElement(cam, "transform").text = " ".join(repr(float(x)) for x in c.cam_to_world.ravel())
    ET.indent(doc)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(doc, encoding="unicode") + "\n"
