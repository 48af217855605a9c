"""Evidence of the photos' own for the fit: skin weights and colour cuts of the part masks."""

from __future__ import annotations

import cv2
import numpy as np

from mvrecon.fit.evidence import part_cuts, skin_weights
from mvrecon.parts import PART_CODES


def face_with_an_eye(rng, shift: int = 0):
    """A skin-coloured face disc with a light eye (white with a dark iris) and a dark brow, and labels
    whose eye and brow are drawn ``shift`` px off where the photo has them."""
    img = np.zeros((240, 240, 3), np.uint8)
    cv2.circle(img, (120, 120), 100, (205, 160, 135), -1)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    eye = np.zeros((240, 240), np.uint8)
    cv2.ellipse(eye, (95, 110), (18, 8), 0, 0, 360, 1, -1)
    img[eye > 0] = (235, 235, 230)
    cv2.circle(img, (95, 110), 6, (60, 40, 30), -1)
    img[eye == 0] = np.where((img[eye == 0] == (60, 40, 30)).all(-1, keepdims=True), (205, 160, 135), img[eye == 0])
    brow = np.zeros((240, 240), np.uint8)
    cv2.ellipse(brow, (95, 88), (24, 5), 0, 0, 360, 1, -1)
    img[brow > 0] = (70, 50, 40)
    labels = np.zeros((240, 240), np.uint8)
    cv2.circle(labels, (120, 120), 100, PART_CODES["skin"], -1)
    seed_eye = np.zeros_like(eye)
    cv2.ellipse(seed_eye, (95 + shift, 110 + shift // 2), (18, 8), 0, 0, 360, 1, -1)
    seed_brow = np.zeros_like(brow)
    cv2.ellipse(seed_brow, (95 - shift, 88 + shift // 2), (24, 5), 0, 0, 360, 1, -1)
    labels[seed_eye > 0] = PART_CODES["right_eye"]
    labels[seed_brow > 0] = PART_CODES["right_brow"]
    return img, labels, eye > 0, brow > 0


def boundary_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean symmetric distance (px) between the outlines of two masks."""
    edge = lambda m: m & ~(cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)  # noqa: E731
    ea, eb = edge(a), edge(b)
    da = cv2.distanceTransform((~eb).astype(np.uint8), cv2.DIST_L2, 3)
    db = cv2.distanceTransform((~ea).astype(np.uint8), cv2.DIST_L2, 3)
    return 0.5 * (float(da[ea].mean()) + float(db[eb].mean()))


def test_colour_cuts_move_misplaced_part_masks_onto_the_photo(rng):
    img, labels, eye, brow = face_with_an_eye(rng, shift=7)
    before_eye = boundary_error(labels == PART_CODES["right_eye"], eye)
    before_brow = boundary_error(labels == PART_CODES["right_brow"], brow)
    assert before_eye > 2 and before_brow > 2  # the seeds are off: the cut has something to mend
    out, ratios = part_cuts(img, labels, ("right_eye", "right_brow"))
    assert boundary_error(out == PART_CODES["right_eye"], eye) < 1.0
    assert boundary_error(out == PART_CODES["right_brow"], brow) < 1.0
    assert ratios["right_eye"] > 0 and ratios["right_brow"] > 0
    # parts that were not asked for, and the skin beyond the cuts, stay as they were
    far = cv2.dilate(((labels >= 2) | eye | brow).astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(out[far], labels[far])


def test_a_part_without_colour_of_its_own_keeps_its_seed(rng):
    img, labels, _, _ = face_with_an_eye(rng, shift=5)
    flat = np.full_like(img, 180)
    out, ratios = part_cuts(flat, labels, ("right_eye",))
    assert ratios["right_eye"] == 0.0
    assert np.array_equal(out, labels)


def test_skin_weights_leave_out_hair_and_highlights(rng):
    img, labels, _, _ = face_with_an_eye(rng)
    lin = img.astype(np.float64) / 255
    lin[150:170, 80:160] = 0.05  # a dark beard patch on the skin
    lin[120:126, 140:146] = 0.99  # a highlight
    w = skin_weights(lin, labels)
    assert w[160, 120] == 0 and w[123, 143] == 0
    assert w[135, 60] > 0.9  # bare skin
    assert w[0, 0] == 0  # not the face
