"""Landmarks and part masks on the real photo in scikit-image, against hand-measured positions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mvrecon.cues import DetectConfig, FaceCues, LandmarkParser, detect, pick_face
from mvrecon.cues.visibility import landmark_confidence, mesh_triangles
from mvrecon.parts import PART_CODES, PART_NAMES

# Measured by hand on skimage.data.astronaut() (512 x 512), from 18-24x nearest-neighbour crops
# with a pixel grid: eye corners where the upper and lower lid lines meet, the nose tip at the
# bottom of the tip's highlight, the subnasale where the columella meets the lip shadow, the
# mouth corners at the outer end of the dark commissure. (x, y) in pixels, centres at integers.
HAND = {
    36: (194.0, 101.0),  # subject's right eye, outer corner (image left)
    39: (214.0, 102.0),  # right eye, inner corner
    42: (236.0, 104.0),  # left eye, inner corner
    45: (257.0, 104.0),  # left eye, outer corner
    30: (223.0, 128.0),  # nose tip
    33: (223.0, 133.0),  # subnasale
    48: (202.0, 140.0),  # right mouth corner
    54: (244.0, 140.0),  # left mouth corner
}
TOL_PX = 4.0  # about a tenth of the inter-ocular distance (42 px) of this face


def test_landmarks_land_on_hand_measured_points(astronaut_cues: FaceCues):
    c = astronaut_cues
    assert c.image_size == (512, 512)
    assert c.points478.shape == (478, 3) and c.points68.shape == (68, 2)
    for i, xy in HAND.items():
        err = float(np.linalg.norm(c.points68[i] - xy))
        assert err < TOL_PX, f"iBUG {i}: {c.points68[i].round(1)} vs hand {xy}, {err:.1f} px"


def test_face_box_score_and_layout(astronaut_cues: FaceCues):
    c = astronaut_cues
    assert c.method == "detector" and c.score > 0.8 and c.n_faces == 1
    x0, y0, x1, y1 = c.box
    for xy in HAND.values():
        assert x0 < xy[0] < x1 and y0 < xy[1] < y1
    # ordering of the iBUG layout: jaw runs from image left over the chin to image right,
    # brows above eyes above nose above mouth above chin
    p = c.points68
    assert p[0, 0] < p[8, 0] < p[16, 0] and p[8, 1] > p[57, 1] > p[33, 1] > p[27, 1]
    assert p[17:27, 1].max() < p[36:48, 1].min()
    # irises lie inside their eye's corners
    assert p[36, 0] < c.points478[468, 0] < p[39, 0] and p[42, 0] < c.points478[473, 0] < p[45, 0]


def test_confidence_frontal_face(astronaut_cues: FaceCues):
    c = astronaut_cues
    assert np.all((c.conf478 >= 0) & (c.conf478 <= 1))
    # points facing the camera on a near-frontal face are confident ...
    assert c.conf68[[30, 33, 36, 39, 42, 45, 48, 54, 51, 57]].min() > 0.5
    # ... the sides of the face, near the silhouette, are not
    assert c.conf68[[0, 1, 15, 16]].max() < 0.5


def test_confidence_drops_on_the_far_side_of_a_turned_head(astronaut_cues: FaceCues):
    """Turn the detected mesh 60 degrees about the vertical axis: the eye that moves away loses
    confidence (self-occlusion and grazing normals), the other keeps it."""
    pts = astronaut_cues.points478
    c0 = pts.mean(0)
    th = np.deg2rad(60)
    R = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    turned = (pts - c0) @ R.T + c0
    conf = landmark_confidence(turned)
    right_eye = [33, 133, 159, 145]  # moves away (+x rotates towards +z, away from the camera)
    left_eye = [362, 263, 386, 374]
    assert conf[[33, 133]].max() < 0.2  # its corners: hidden by the nose bridge / turned away
    assert conf[right_eye].mean() < 0.5 * conf[left_eye].mean()
    assert conf[left_eye].min() > 0.3
    # turning the other way mirrors it
    conf2 = landmark_confidence((pts - c0) @ R + c0)
    assert conf2[[362, 263]].max() < 0.2
    assert conf2[left_eye].mean() < 0.5 * conf2[right_eye].mean() and conf2[right_eye].min() > 0.3


def test_mesh_triangles_consistently_oriented(astronaut_cues: FaceCues):
    tris, touches = mesh_triangles()
    assert tris.shape[1] == 3 and len(tris) > 800
    assert touches.shape == (468, len(tris)) and touches.sum() == 3 * len(tris)
    v = astronaut_cues.points478[:468]
    n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    facing = np.sign(n[:, 2])
    # one orientation: on a frontal face almost every triangle faces the same way
    assert max((facing > 0).mean(), (facing < 0).mean()) > 0.9


def test_part_masks_plausible(astronaut, astronaut_cues: FaceCues):
    labels = LandmarkParser().parse(astronaut, astronaut_cues)
    assert labels.shape == (512, 512) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= set(range(len(PART_NAMES)))
    ys, xs = {}, {}
    for name in PART_NAMES[1:]:
        m = labels == PART_CODES[name]
        assert m.sum() > 15, f"{name} is (nearly) empty"
        ys[name], xs[name] = np.nonzero(m)
    sk_x0, sk_x1, sk_y0, sk_y1 = xs["skin"].min(), xs["skin"].max(), ys["skin"].min(), ys["skin"].max()
    for eye in ("right_eye", "left_eye"):
        assert sk_x0 < xs[eye].min() and xs[eye].max() < sk_x1
        assert sk_y0 < ys[eye].min() and ys[eye].max() < sk_y1
    nose_y = ys["nose"].mean()
    assert ys["upper_lip"].mean() > nose_y and ys["lower_lip"].mean() > ys["upper_lip"].mean()
    assert xs["right_eye"].mean() < xs["left_eye"].mean()  # subject's right is image left
    assert ys["right_brow"].mean() < ys["right_eye"].mean()
    # the skin stops at the brows (forehead cut): no skin well above the brow line
    assert sk_y0 >= min(ys["right_brow"].min(), ys["left_brow"].min()) - 2
    # the face covers a plausible share of the 512 px photo (face ~110 px wide)
    face = (labels > 0).sum()
    assert 4000 < face < 20000


def test_no_face_returns_none(rng):
    flat = np.full((480, 640, 3), 128, np.uint8)
    noise = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert detect(flat) is None
    assert detect(noise, DetectConfig(tile_grids=())) is None


def test_input_not_modified_and_gray_accepted(astronaut, astronaut_cues):
    img = astronaut.copy()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    g = gray.copy()
    cues = detect(gray)
    np.testing.assert_array_equal(gray, g)
    np.testing.assert_array_equal(img, astronaut)
    assert cues is not None
    assert np.median(np.linalg.norm(cues.points68 - astronaut_cues.points68, axis=1)) < 2.0
    with pytest.raises(ValueError, match="uint8"):
        detect(astronaut.astype(np.float32))


def test_in_plane_rotation(astronaut, astronaut_cues):
    """Rotate the photo 30 degrees about the face: landmarks rotate with it."""
    centre = tuple(float(v) for v in astronaut_cues.points68[30])
    M = cv2.getRotationMatrix2D(centre, 30, 1.0)
    rot = cv2.warpAffine(astronaut, M, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    cues = detect(rot)
    assert cues is not None
    expected = astronaut_cues.points68 @ M[:, :2].T + M[:, 2]
    err = np.linalg.norm(cues.points68 - expected, axis=1)
    assert np.median(err) < 2.5, np.median(err)
    assert err[[36, 39, 42, 45, 30, 48, 54]].max() < 5


def test_small_face_in_large_frame(astronaut, astronaut_cues):
    """A ~120 px face in a 3000 x 2250 frame is a few pixels in the detector's input: the tiled
    search finds it and the crop re-run maps the landmarks back to full-frame pixels."""
    s = 1.1
    small = cv2.resize(astronaut, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    frame = np.full((2250, 3000, 3), 190, np.uint8)
    x0, y0 = 2200, 1500
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    whole_only = detect(frame, DetectConfig(tile_grids=()))
    cues = detect(frame)
    assert cues is not None and cues.method == "detector-tiles"
    assert cues.image_size == (3000, 2250)
    expected = (astronaut_cues.points68 + 0.5) * s - 0.5 + [x0, y0]
    err = np.linalg.norm(cues.points68 - expected, axis=1)
    assert np.median(err) < 2.5, np.median(err)
    # and the tiles are what found it
    assert whole_only is None


def test_pick_face_prefers_large_and_central():
    W, H = 1000, 800
    centred = [450, 350, 550, 450]  # 100 px, at the centre
    corner_big = [0, 0, 140, 140]  # twice the area, in the corner
    small_centre = [480, 380, 520, 420]
    assert pick_face(np.array([corner_big, centred, small_centre], float), W, H) == 1
    assert pick_face(np.array([small_centre, [300, 250, 700, 650]], float), W, H) == 1
    # the same face near the edge loses to itself at the centre
    edge = [850, 350, 950, 450]
    assert pick_face(np.array([edge, centred], float), W, H) == 1


def test_two_faces_the_larger_one_is_meshed(astronaut):
    """Two faces at similar distances from the centre: the larger wins."""
    frame = np.full((512, 1024, 3), 200, np.uint8)
    frame[:, :512] = astronaut  # face ~106 px, centre near x = 227
    frame[76:436, 600:960] = cv2.resize(astronaut, (360, 360), interpolation=cv2.INTER_AREA)  # ~75 px
    cues = detect(frame)
    assert cues is not None and cues.n_faces == 2
    assert abs(cues.points68[30, 0] - 223) < 5


def test_two_faces_the_central_one_is_meshed(astronaut):
    """A larger face in the corner loses to a smaller one at the centre."""
    frame = np.full((1000, 1600, 3), 200, np.uint8)
    frame[:512, :512] = astronaut
    small = cv2.resize(astronaut, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    y0, x0 = 500 - 102, 800 - 178  # puts the small face's nose tip near the frame centre
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    cues = detect(frame)
    assert cues is not None and cues.n_faces == 2
    assert np.linalg.norm(cues.points68[30] - [800, 500]) < 8


def test_facecues_dict_round_trip(astronaut_cues):
    d = astronaut_cues.to_dict()
    back = FaceCues.from_dict(d)
    np.testing.assert_allclose(back.points68, astronaut_cues.points68, atol=1e-3)
    np.testing.assert_allclose(back.points478, astronaut_cues.points478, atol=1e-3)
    np.testing.assert_allclose(back.conf68, astronaut_cues.conf68, atol=1e-3)
    assert back.image_size == astronaut_cues.image_size and back.method == astronaut_cues.method


def _turned(cues: FaceCues, deg: float) -> FaceCues:
    """The cues of the same face with its mesh turned ``deg`` about the vertical axis."""
    import dataclasses

    from mvrecon.cues import mediapipe_to_ibug68

    pts = cues.points478
    c0 = pts.mean(0)
    th = np.deg2rad(deg)
    R = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    tp = (pts - c0) @ R.T + c0
    conf = landmark_confidence(tp)
    p68, c68 = mediapipe_to_ibug68(tp[:, :2], conf)
    return dataclasses.replace(cues, points478=tp, conf478=conf, points68=p68, conf68=c68)


def test_mesh_silhouette_covers_the_mesh(astronaut_cues):
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    from mvrecon.cues.parsing import mesh_silhouette

    sil = mesh_silhouette(astronaut_cues.points478, 512, 512)
    xy = np.round(astronaut_cues.points478[:468, :2]).astype(int)
    assert sil[xy[:, 1], xy[:, 0]].all()
    # on a frontal face the silhouette is the face oval, filled
    nxt = dict(FACEMESH_FACE_OVAL)
    ring = [10]
    while nxt[ring[-1]] != 10:
        ring.append(nxt[ring[-1]])
    oval = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(oval, [np.round(astronaut_cues.points478[ring, :2]).astype(np.int32)], 1)
    inter, union = (sil & (oval > 0)).sum(), (sil | (oval > 0)).sum()
    assert inter / union > 0.97
    # clipped at the image border without error
    assert mesh_silhouette(astronaut_cues.points478 - [300, 0, 0], 512, 512).sum() < sil.sum()


def test_default_parser_matches_shared_polygons_on_frontal_face(astronaut, astronaut_cues):
    from mvrecon.cues.parsing import PolygonParser

    lab = LandmarkParser().parse(astronaut, astronaut_cues)
    poly = PolygonParser().parse(astronaut, astronaut_cues)
    assert (lab[poly != PART_CODES["background"]] == poly[poly != PART_CODES["background"]]).all()
    skin, pskin = lab == PART_CODES["skin"], poly == PART_CODES["skin"]
    assert (skin & pskin).sum() / (skin | pskin).sum() > 0.97


def test_default_parser_reaches_the_silhouette_on_a_turned_head(astronaut, astronaut_cues):
    """Turned 60 degrees, the far jaw line is hidden behind the cheek: the shared polygons leave
    the far cheek out, the default parser fills it up to the mesh's silhouette."""
    from mvrecon.cues.parsing import PolygonParser, mesh_silhouette

    turned = _turned(astronaut_cues, 60)
    assert turned.conf68[0:5].max() < 0.2  # far jaw points hidden
    lab = LandmarkParser().parse(astronaut, turned)
    poly = PolygonParser().parse(astronaut, turned)
    extra = (lab == PART_CODES["skin"]) & (poly != PART_CODES["skin"])
    assert extra.sum() > 0.2 * (poly == PART_CODES["skin"]).sum()
    # the added skin is on the far side (image left of the rest of the skin) and inside the silhouette
    ys, xs = np.nonzero(extra)
    assert np.median(xs) < np.median(np.nonzero(poly == PART_CODES["skin"])[1]) - 5
    assert mesh_silhouette(turned.points478, 512, 512)[extra].all()
    # nothing is added above the brows
    assert ys.min() >= turned.points68[17:27, 1].min() - 2


def test_frontal_frame_undoes_a_turn(astronaut_cues):
    """The frontal frame of the mesh turned by 40 degrees is the untouched mesh's, turned back:
    both give the same frontal coordinates."""
    from mvrecon.cues.parsing import frontal_frame

    p = astronaut_cues.points478
    q = _turned(astronaut_cues, 40).points478
    R1, c1 = frontal_frame(p)
    R2, c2 = frontal_frame(q)
    f1, f2 = (p - c1) @ R1.T, (q - c2) @ R2.T
    iod = np.linalg.norm(p[33] - p[263])
    assert np.abs(f1 - f2).max() < 0.02 * iod
    # axes: x from the subject's right to left eye, y from the brows down to the chin
    assert f1[263, 0] > f1[33, 0] and f1[152, 1] > f1[168, 1] and f1[1, 2] < f1[234, 2]


def test_surface_parser_on_the_photo(astronaut, astronaut_cues):
    """Near-frontal, the surface parser agrees with the image polygons; every part non-empty."""
    from mvrecon.cues.parsing import PolygonParser, SurfaceParser

    lab = SurfaceParser().parse(astronaut, astronaut_cues)
    poly = PolygonParser().parse(astronaut, astronaut_cues)
    for code in range(1, 9):
        a, b = lab == code, poly == code
        assert a.sum() > 15
        assert (a & b).sum() / (a | b).sum() > 0.7, PART_NAMES[code]
    # a coarser ray grid gives nearly the same labels
    coarse = SurfaceParser(max_grid=40).parse(astronaut, astronaut_cues)
    assert (coarse == lab).mean() > 0.99


def test_surface_parser_hides_what_the_nose_hides(astronaut, astronaut_cues):
    """Turned 60 degrees: the far eye shrinks to what is not behind the nose, and the nose
    covers its whole 3D side rather than a polygon between projected landmarks."""
    from mvrecon.cues.parsing import PolygonParser, SurfaceParser

    turned = _turned(astronaut_cues, 60)
    lab = SurfaceParser().parse(astronaut, turned)
    poly = PolygonParser().parse(astronaut, turned)
    far_eye = PART_CODES["right_eye"]
    assert (lab == far_eye).sum() < 0.5 * (poly == far_eye).sum()
    assert (lab == PART_CODES["nose"]).sum() > 1.3 * (poly == PART_CODES["nose"]).sum()
    # its skin reaches the silhouette as well
    assert (lab == PART_CODES["skin"]).sum() > 1.2 * (poly == PART_CODES["skin"]).sum()


def test_mesh_fallback_when_the_detector_finds_nothing(astronaut, astronaut_cues, monkeypatch):
    """A face the box detector misses (e.g. a strongly turned head) is found by the mesh's own
    detector and refined on a crop: same landmarks, method 'mesh'."""
    import mvrecon.cues.facemesh as D

    monkeypatch.setattr(D, "_detect_boxes", lambda img, cfg, models=(1, 0): (np.zeros((0, 4)), np.zeros(0)))
    cues = detect(astronaut, DetectConfig(tile_grids=()))
    assert cues is not None and cues.method == "mesh"
    err = np.linalg.norm(cues.points68 - astronaut_cues.points68, axis=1)
    assert np.median(err) < 2.0
    # the box comes from the landmarks' bounds then
    assert np.all(cues.box[:2] <= cues.points478[:, :2].min(0) + 1e-6)
