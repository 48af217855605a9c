"""A head the model did not make: the face model registered to any head mesh (a real scan).

``register_model(model, read_head_mesh(path))`` finds the face on the mesh (MediaPipe on a
render), fits a similarity and the model's identity to it, then pulls the model's skin onto the
mesh (non-rigid) and carries the eyes, teeth and mouth interior along (:mod:`.headfit` has the
steps). The result has the model's topology, so the model's albedo, part labels, UVs, eyes and
teeth come with it, and it is metric: the similarity that maps the mesh into model space takes
its scale from the model's landmarks (a mesh in arbitrary units becomes a head of the model's
size class). The mesh's own shape stays: the registered skin lies on the mesh, mm-scale features
included, which is what no combination of the model's identity modes reproduces.

The mesh is expected +Y up with the face towards +Z (glTF); other orientations are searched for
(Z-up, face towards -Y first). Eyes and mouth may be closed on the mesh (a scan's eyelids are a
surface): the model's eye and mouth openings are kept open, their rims following the skin
around them rather than the mesh.

Licences: a licence file next to the mesh (``*licen[cs]e*``) is carried as ``license`` and
summarised as a one-line ``attribution`` (Creative Commons notices are recognised), which every
session made from it must repeat.

:func:`registered_head` caches the result (several seconds to make) as ``.npz`` under the models
folder, keyed by the mesh file's sha256, the model (topology and shape), the settings and
:data:`VERSION`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MvreconError
from ..facemodel import FaceModel
from ..geometry import Similarity
from ..io import write_npz
from ..render.raycast import MeshQuery
from . import headfit as hf
from . import meshops as mo
from .head import SkinTopology

log = logging.getLogger(__name__)

#: Bump when the registration changes its result: cached registrations of other versions are ignored.
VERSION = 1
FORMAT = "mvrecon-registered-head/1"
MM = 1e-3


# ------------------------------------------------------------------------------ the input mesh


@dataclass(frozen=True)
class HeadScan:
    """A head mesh as read: ``verts`` (V, 3) float64 in the file's units (seam duplicates
    welded), ``faces`` (F, 3) int64; ``sha256`` of the file; the licence found next to it."""

    verts: np.ndarray
    faces: np.ndarray
    path: Path | None = None
    sha256: str = ""
    attribution: str = ""
    """One line naming the work, its author and licence ('' when no licence file was found)."""
    license: str = ""
    """The licence file's full text."""


def read_head_mesh(path: str | Path) -> HeadScan:
    """Read a head mesh (.glb/.gltf/.ply/.obj/.off/.stl) and the licence next to it.

    UV seams split vertices in most files; coincident vertices are welded so the surface is one
    piece. A file that cannot be read, or holds too little or a flat mesh, is an
    :class:`~mvrecon.errors.InputError`."""
    from ..evaluate.meshes import read_mesh

    path = Path(path)
    v, f = read_mesh(path)
    size = float(np.ptp(v, axis=0).max())
    if len(f) < 200 or size <= 0:
        raise InputError(
            f"a head mesh needs at least 200 triangles with some extent (got {len(f)} triangles, extent {size:.3g})",
            path,
        )
    v, f, _ = mo.weld(v, f, tol=1e-6 * size)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    v, f, _ = mo.compact(v, f)
    ext = np.sort(np.ptp(v, axis=0))
    if ext[0] < 0.05 * ext[2]:
        raise InputError(f"mesh is flat (extents {ext.round(4).tolist()}): not a head", path)
    attribution, text = find_license(path)
    return HeadScan(
        verts=v,
        faces=f,
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        attribution=attribution,
        license=text,
    )


_CC_PARTS = (
    ("Attribution", "BY"),
    ("NonCommercial", "NC"),
    ("NoDerivatives", "ND"),
    ("NoDerivs", "ND"),
    ("ShareAlike", "SA"),
)


def summarize_license(text: str) -> str:
    """One attribution line from a licence notice: for a Creative Commons notice ('<work> is
    licensed under a Creative Commons Attribution 3.0 Unported License. Based on a work at
    <site>.') '<work>, based on a work at <site>, CC BY 3.0'; otherwise its first line."""
    flat = " ".join(text.split())
    m = re.search(
        r"(.+?)\s+is licensed under an?\s+Creative Commons\s+(.+?)\s+([0-9.]+)(?:\s+\w+)?\s+License", flat, flags=re.I
    )
    if not m:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[0] if lines else ""
    work = re.sub(r"^Creative Commons Licen[cs]e\s+", "", m.group(1).strip(), flags=re.I)
    kinds = "-".join(short for long, short in _CC_PARTS if long.lower() in m.group(2).lower())
    out = work
    based = re.search(r"Based on a work at\s+(?:https?://)?(?:www\.)?(\S+?)\.?(?:\s|$)", flat, flags=re.I)
    if based:
        out += f", based on a work at {based.group(1)}"
    return f"{out}, CC {kinds or 'BY'} {m.group(3).rstrip('.')}"


def find_license(mesh_path: Path) -> tuple[str, str]:
    """(attribution line, full text) of a licence file beside ``mesh_path`` (the one sharing the
    mesh's stem first), or ('', '')."""
    folder = Path(mesh_path).parent
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and re.search(r"licen[cs]e", p.name, re.I) and p.suffix.lower() in ("", ".txt", ".md")
    )
    files.sort(key=lambda p: not p.name.lower().startswith(Path(mesh_path).stem.lower()))
    if not files:
        return "", ""
    text = files[0].read_text(encoding="utf-8", errors="replace")
    return summarize_license(text), text


# ------------------------------------------------------------------------------ settings and result


@dataclass(frozen=True)
class RegisterConfig:
    """How the face model is registered to a head mesh."""

    render_size: int = 768
    """Side (px) of the square renders MediaPipe finds the face on."""
    identity_steps: int = 6
    """Alternations of the similarity and the identity fit."""
    identity_prior_mm: float = 2.0
    """Noise (mm) a landmark or matched point is trusted to; smaller lets identity move further."""
    identity_landmarks: float = 5.0
    """How many independent points the landmarks count as in the identity fit (the surface
    counts as 300): MediaPipe places its points on two heads a little differently, so they
    place the model roughly and the surface decides."""
    stiffness: tuple[float, ...] = (300.0, 100.0, 30.0, 10.0, 3.0)
    """Bending weights of the non-rigid stages (dimensionless: against a unit data weight)."""
    steps_per_stage: int = 3
    """Closest-point steps per stiffness stage."""
    max_distance_mm: float = 15.0
    """Matches farther than this are rejected (the model reaches where the mesh does not)."""
    min_normal_cos: float = 0.5
    """Matches whose normals differ more than this (cosine) are rejected."""
    eye_contact_mm: float = 1.0
    """Skin this close to an eyeball on the model mean (the lids lying on it) belongs to the eye
    zone with the opening's rim: it moves with the eyeball, so the lids never cut into it."""
    eye_gap_mm: float = 2.0
    """No data term within this distance of the eye zone's core: a scan's closed lids are not
    the model's open ones."""
    eye_taper_mm: float = 12.0
    """Over this distance beyond the gap the data weight rises to 1 (the lid up to its crease)."""
    mouth_gap_mm: float = 1.0
    """The same for the mouth opening."""
    mouth_taper_mm: float = 5.0
    """The same for the mouth opening."""
    ear_gap_mm: float = 5.0
    """The ears (and this much around them: the concha's floor) move rigidly with the skin
    around them: a decimated scan's ears are too intricate for closest points."""
    ear_taper_mm: float = 8.0
    """Over this distance beyond the gap the data weight rises to 1."""

    def key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RegisteredHead:
    """The face model registered to a head mesh, in model space (metres, +Y up, +Z out of the face)."""

    verts: np.ndarray
    """(N, 3) float64: all model vertices; the skin on the mesh, the interior carried along."""
    id_coeffs: np.ndarray
    """(K_id,) the identity fit the non-rigid step started from."""
    to_model: Similarity
    """Mesh units -> model space (its ``scale`` is metres per mesh unit)."""
    residual_mm: np.ndarray
    """(3,) median, 95th percentile, max distance (mm) of the face sub-mesh's vertices to the mesh."""
    fitted_residual_mm: np.ndarray
    """(3,) the same over the face vertices the data term held (away from eye and mouth openings)."""
    min_area_ratio: float
    """Smallest signed area ratio of a skin triangle against the model mean (> 0: no fold; see
    :func:`min_area_ratio`)."""
    n_new_crossings: int
    """Eyeball, teeth and gum edges through the skin that the identity fit did not have
    (:func:`skin_crossings`; 0 is right: the registration pushed nothing through)."""
    pupils_visible: np.ndarray
    """(2,) bool, right and left: the eyes are open (:func:`pupils_visible`)."""
    landmark_ids: np.ndarray
    """(L,) MediaPipe indices of the landmarks used."""
    landmarks: np.ndarray
    """(L, 3) where they were found on the mesh, model space (NaN: not found)."""
    model: str
    topology: str
    mesh_sha256: str
    attribution: str
    license: str
    seconds: float
    """Wall time of the registration."""

    @property
    def scale(self) -> float:
        """Metres per mesh unit."""
        return float(self.to_model.scale)

    def save(self, path: str | Path) -> Path:
        S = self.to_model
        return write_npz(
            path,
            format=np.array(FORMAT),
            version=np.array(VERSION),
            verts=self.verts,
            id_coeffs=self.id_coeffs,
            scale=np.array(S.scale),
            rotation=S.rotation,
            translation=S.translation,
            residual_mm=self.residual_mm,
            fitted_residual_mm=self.fitted_residual_mm,
            min_area_ratio=np.array(self.min_area_ratio),
            n_new_crossings=np.array(self.n_new_crossings),
            pupils_visible=self.pupils_visible,
            landmark_ids=self.landmark_ids,
            landmarks=self.landmarks,
            model=np.array(self.model),
            topology=np.array(self.topology),
            mesh_sha256=np.array(self.mesh_sha256),
            attribution=np.array(self.attribution),
            license=np.array(self.license),
            seconds=np.array(self.seconds),
        )

    @classmethod
    def load(cls, path: str | Path) -> RegisteredHead:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != FORMAT:
                    raise InputError(f"not a {FORMAT} file", path)
                return cls(
                    verts=z["verts"],
                    id_coeffs=z["id_coeffs"],
                    to_model=Similarity(float(z["scale"]), z["rotation"], z["translation"]),
                    residual_mm=z["residual_mm"],
                    fitted_residual_mm=z["fitted_residual_mm"],
                    min_area_ratio=float(z["min_area_ratio"]),
                    n_new_crossings=int(z["n_new_crossings"]),
                    pupils_visible=z["pupils_visible"],
                    landmark_ids=z["landmark_ids"],
                    landmarks=z["landmarks"],
                    model=str(z["model"]),
                    topology=str(z["topology"]),
                    mesh_sha256=str(z["mesh_sha256"]),
                    attribution=str(z["attribution"]),
                    license=str(z["license"]),
                    seconds=float(z["seconds"]),
                )
        except InputError:
            raise
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"unreadable registered head ({e})", path) from None


# ------------------------------------------------------------------------------ registration


def signed_area_ratio(verts: np.ndarray, ref: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) area of each triangle of ``verts`` projected on the normal of the same triangle of
    ``ref``, over its area in ``ref``: < 0 where a triangle flipped (a fold)."""
    f = np.asarray(faces, np.int64)
    cr = np.cross(ref[f[:, 1]] - ref[f[:, 0]], ref[f[:, 2]] - ref[f[:, 0]])
    cv = np.cross(verts[f[:, 1]] - verts[f[:, 0]], verts[f[:, 2]] - verts[f[:, 0]])
    area_r = np.linalg.norm(cr, axis=1)
    return np.einsum("fd,fd->f", cv, cr) / np.maximum(area_r * area_r, 1e-30)


def min_area_ratio(model: FaceModel, verts: np.ndarray, min_rel_area: float = 0.05) -> float:
    """Smallest :func:`signed_area_ratio` of the skin against the model mean, over triangles of at
    least ``min_rel_area`` times the median area on the mean (the model's own slivers, ICT's at
    the mouth corners, flip under its own identity modes: they say nothing about a fold)."""
    topo = SkinTopology.of(model)
    tris = model.triangles[topo.tri_ids].astype(np.int64)
    mean = model.mean.astype(np.float64)
    area = np.linalg.norm(np.cross(mean[tris[:, 1]] - mean[tris[:, 0]], mean[tris[:, 2]] - mean[tris[:, 0]]), axis=1)
    keep = area >= min_rel_area * np.median(area)
    return float(signed_area_ratio(verts, mean, tris[keep]).min())


#: Interior parts that must stay behind the skin.
INTERIOR_SUBMESHES = ("eyeball_left", "eyeball_right", "teeth", "gums_tongue")


def skin_crossings(model: FaceModel, verts: np.ndarray) -> np.ndarray:
    """(E,) bool over the edges of :data:`INTERIOR_SUBMESHES` (in a fixed order): the edge
    passes through the skin. The model itself has some (its lid margins dip into the eyeballs;
    large identity coefficients push teeth through the lips), so what a registration is judged
    by is the crossings it adds to the identity fit it started from."""
    topo = SkinTopology.of(model)
    v = np.asarray(verts, np.float64)
    caster = hf.Caster(v[topo.vids], topo.faces)
    tris = [
        model.triangles[np.arange(*model.submesh_triangles[s])]
        for s in INTERIOR_SUBMESHES
        if s in model.submesh_triangles
    ]
    if not tris:
        return np.zeros(0, bool)
    edges, _ = mo._edges(np.concatenate(tris).astype(np.int64))
    a, d = v[edges[:, 0]], v[edges[:, 1]] - v[edges[:, 0]]
    length = np.linalg.norm(d, axis=1)
    _, hit, _ = caster.cast(a, d / np.maximum(length, 1e-20)[:, None])
    dist = np.linalg.norm(hit - a, axis=1)
    return np.isfinite(dist) & (dist < length)


def pupils_visible(model: FaceModel, verts: np.ndarray) -> np.ndarray:
    """(2,) bool, right and left eye: nothing of the skin in front of the pupil (the eyeball's
    most forward vertex on the mean) along +Z, i.e. the eye is open."""
    topo = SkinTopology.of(model)
    caster = hf.Caster(np.asarray(verts, np.float64)[topo.vids], topo.faces)
    out = []
    for name in ("eyeball_right", "eyeball_left"):
        if name not in model.submeshes:
            out.append(False)
            continue
        a, b = model.submeshes[name]
        pupil = verts[a + int(np.argmax(model.mean[a:b, 2]))]
        tri, _, _ = caster.cast(pupil[None] + [0, 0, 1e-4], np.array([[0, 0, 1.0]]))
        out.append(bool(tri[0] < 0))
    return np.array(out)


def _stats_mm(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d) / MM
    return np.array([np.median(d), np.percentile(d, 95), d.max()]) if len(d) else np.full(3, np.nan)


def skin_zones(model: FaceModel, vids: np.ndarray, faces: np.ndarray, cfg: RegisterConfig) -> hf.Zones:
    """The skin's zones where the mesh is not followed (see :class:`.headfit.Zones`): the eye
    openings ('right', 'left': their rims and the lids lying on the eyeballs; the eyeballs move
    with them), the mouth opening's rim, and the ears."""
    from scipy.spatial import cKDTree

    v = model.mean[vids].astype(np.float64)
    lm = model.mean[np.asarray(model.landmarks68)].astype(np.float64)
    loops = hf.border_loops(faces, len(v))

    def eye(corners: list[int], eyeball: str) -> np.ndarray:
        rim = hf.opening_rim(v, loops, lm[corners])
        if eyeball not in model.submeshes:
            return rim
        d, _ = cKDTree(model.mean[slice(*model.submeshes[eyeball])]).query(v)
        return np.union1d(rim, np.flatnonzero(d < cfg.eye_contact_mm * MM))

    seeds = {
        "right": (eye([36, 39], "eyeball_right"), cfg.eye_gap_mm * MM, cfg.eye_taper_mm * MM),
        "left": (eye([42, 45], "eyeball_left"), cfg.eye_gap_mm * MM, cfg.eye_taper_mm * MM),
        "mouth": (hf.opening_rim(v, loops, lm[[48, 54]]), cfg.mouth_gap_mm * MM, cfg.mouth_taper_mm * MM),
        "ear_right": (hf.ear_vertices(v, faces, lm[0], -1.0), cfg.ear_gap_mm * MM, cfg.ear_taper_mm * MM),
        "ear_left": (hf.ear_vertices(v, faces, lm[16], 1.0), cfg.ear_gap_mm * MM, cfg.ear_taper_mm * MM),
    }
    return hf.soft_zones(v, seeds)


def register_model(model: FaceModel, scan: HeadScan, cfg: RegisterConfig = RegisterConfig()) -> RegisteredHead:
    """Register ``model`` to ``scan`` (see the module docstring)."""
    from ..cues.embedding import topology_hash

    t0 = time.perf_counter()
    rows = hf.model_landmarks(model, cfg.render_size)
    topo = SkinTopology.of(model)
    vids, faces = topo.vids, topo.faces
    caster = hf.Caster(scan.verts, scan.faces)
    query = MeshQuery(scan.verts, scan.faces)
    mean = model.mean.astype(np.float64)

    # 1-2: landmarks, similarity, identity
    lifted, S = hf.find_landmarks(caster, rows, model, cfg.render_size)
    scan_lm, lm_w = hf.scan_points(lifted, rows)
    zones = skin_zones(model, vids, faces, cfg)
    data_w = zones.weight * hf.cavity_weights(mean[vids], faces)
    c, S = hf.fit_identity(
        model,
        rows,
        scan_lm,
        lm_w,
        query,
        caster.normals,
        vids,
        faces,
        data_w,
        S,
        cfg.identity_steps,
        cfg.identity_prior_mm,
        cfg.max_distance_mm * MM,
        cfg.min_normal_cos,
        n_landmarks=cfg.identity_landmarks,
    )
    log.info("headmesh: similarity scale %.4g, identity |c| %.2f", S.scale, np.linalg.norm(c))

    # 3: non-rigid, in model space
    to_model = S.inverse()
    scan_m = to_model.apply(scan.verts)
    q_m = MeshQuery(scan_m, scan.faces)
    n_m = caster.normals @ to_model.rotation.T
    base = model.vertices(c).astype(np.float64)
    x, motions = hf.nonrigid(
        base[vids],
        faces,
        q_m,
        n_m,
        zones,
        data_w,
        cfg.stiffness,
        cfg.steps_per_stage,
        cfg.max_distance_mm * MM,
        cfg.min_normal_cos,
    )

    # 4: the interior parts follow
    verts = hf.carry_interior(model, base, vids, x, motions)

    face_v = np.arange(*model.submeshes["face"]) if "face" in model.submeshes else vids
    d = q_m.closest(verts[face_v]).distances
    held = data_w[np.searchsorted(vids, face_v)] > 0.99
    lm_found = np.where((lm_w > 0)[:, None], to_model.apply(scan_lm), np.nan)
    return RegisteredHead(
        verts=verts,
        id_coeffs=c,
        to_model=to_model,
        residual_mm=_stats_mm(d),
        fitted_residual_mm=_stats_mm(d[held]),
        min_area_ratio=min_area_ratio(model, verts),
        n_new_crossings=int((skin_crossings(model, verts) & ~skin_crossings(model, base)).sum()),
        pupils_visible=pupils_visible(model, verts),
        landmark_ids=rows.ids,
        landmarks=lm_found,
        model=model.name,
        topology=topology_hash(model.triangles),
        mesh_sha256=scan.sha256,
        attribution=scan.attribution,
        license=scan.license,
        seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------------------ cache


def cache_path(
    model: FaceModel, sha256: str, cfg: RegisterConfig = RegisterConfig(), cache_dir: str | Path | None = None
) -> Path:
    """Where the registration of the mesh with file hash ``sha256`` is cached: ``heads/`` under the
    models folder (as the landmark embedding), named by model, mesh, topology, the model's shape
    (mean and identity modes: a re-imported model with the same triangles is another model),
    settings and version."""
    from ..cues.embedding import topology_hash
    from ..facemodel.registry import models_dir

    shape = hashlib.sha256(
        np.ascontiguousarray(model.mean, np.float32).tobytes()
        + np.ascontiguousarray(model.id_basis, np.float32).tobytes()
    ).hexdigest()[:8]
    folder = Path(cache_dir) if cache_dir is not None else models_dir() / "heads"
    return folder / f"{model.name}.{sha256[:16]}.{topology_hash(model.triangles)}.{shape}.{cfg.key()}.v{VERSION}.npz"


def registered_head(
    model: FaceModel,
    mesh_path: str | Path,
    cfg: RegisterConfig = RegisterConfig(),
    cache_dir: str | Path | None = None,
    refresh: bool = False,
) -> RegisteredHead:
    """:func:`register_model` of the mesh at ``mesh_path``, from the cache when it was done before
    (``refresh`` redoes it). A cache folder that cannot be written only costs the next run."""
    path = Path(mesh_path)
    if not path.is_file():
        raise InputError("head mesh not found", path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    cached = cache_path(model, sha, cfg, cache_dir)
    if cached.is_file() and not refresh:
        try:
            head = RegisteredHead.load(cached)
            if head.verts.shape == (model.n_vertices, 3):
                log.info("headmesh: cached registration %s", cached)
                return head
        except MvreconError as e:
            log.warning("headmesh: ignoring the cache (%s)", e)
    head = register_model(model, read_head_mesh(path), cfg)
    try:
        head.save(cached)
    except OSError as e:
        log.warning("headmesh: cannot cache the registration at %s (%s)", cached, e)
    return head


def followed_face_vertices(model: FaceModel, cfg: RegisterConfig | None = None) -> np.ndarray:
    """Vertex ids of the face sub-mesh that the registration follows the scan on (not the rigid
    eye and mouth rims or the ears, which keep the model's shape)."""
    topo = SkinTopology.of(model)
    zones = skin_zones(model, topo.vids, topo.faces, cfg or RegisterConfig())
    face = np.arange(*model.submeshes["face"])
    held = np.zeros(model.n_vertices, bool)
    held[topo.vids[zones.weight > 0.99]] = True
    return face[held[face]]
