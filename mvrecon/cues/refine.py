"""Part outlines moved onto the image's own edges: brows, eye openings and lips by colour.

Landmark-derived masks are only as good as the landmarks (MediaPipe's are a few pixels off on a
studio view), and the thin parts suffer most: a shift of a few pixels costs a brow a large share
of its IoU. Those parts are also the ones with their own colour: brow hair is darker than the skin
around it, the eye opening (sclera and iris) differs from the lids, the lips are redder. A face
parser learns exactly these cues; without trained weights, mvrecon segments each part by GrabCut
(OpenCV) in a small window around its landmark mask: the eroded mask seeds the part's colour
model, a ring outside the dilated mask seeds the surroundings', and the graph cut draws the
outline in between along the colour edge.

A cut is only tried where the part's colour differs from its surroundings' (``min_contrast``)
and kept only when it stays plausible (area within a factor 0.5-2 of the landmark mask,
overlapping it by IoU >= 0.35, its main component); otherwise the landmark mask stays, so a
low-contrast part (blond brows, lips the colour of the skin) falls back to the landmarks instead
of going astray. The upper and lower lip are cut as one region and split again by the landmark
masks (each pixel to the nearer of the two), then checked one by one. Which parts the cut
replaces by default was measured (:attr:`RefineConfig.parts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..parts import PART_CODES


@dataclass(frozen=True)
class RefineConfig:
    band: float = 0.13
    """Half-width of the uncertain band around a landmark mask, in inter-ocular distances.
    Chosen with bench/cues.py (model parser, frame fits, mean IoU per part): widening the band from
    0.07 through 0.10 to 0.13 helped the upper lip and the brows, on the seeds it was chosen on and
    on held-out ones; wider (0.16) loses again."""
    iterations: int = 2
    """GrabCut iterations per part."""
    min_area_ratio: float = 0.5
    max_area_ratio: float = 2.0
    min_iou: float = 0.35
    min_contrast: float = 1.0
    """Least distance between the mean colours of the part's sure pixels and its surroundings',
    in units of their pooled standard deviation (CIELAB), for a cut to be tried."""
    parts: tuple[str, ...] = ("right_brow", "left_brow", "upper_lip")
    """Parts whose outline the cut replaces. On synthetic sessions (bench/cues.py: the model
    parser's mean IoU without and with the cut) it helps the brows and the upper lip, but not the
    eyes (one eye up, the other down) and it hurts the lower lip (the synthetic albedo's lip colour
    bleeds past the lower lip's label), so those keep the model's outline by default; with band
    0.13 and frame fits the same holds."""
    max_band_px: float = 8.0
    """Windows whose band is wider are cut at a scale that makes it this wide (time)."""


#: Groups segmented together: their union is cut, then split back by the landmark masks.
GROUPS: tuple[tuple[str, ...], ...] = (
    ("right_brow",),
    ("left_brow",),
    ("right_eye",),
    ("left_eye",),
    ("upper_lip", "lower_lip"),
)


def _disk(r: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _iod(labels: np.ndarray) -> float | None:
    cs = []
    for p in ("right_eye", "left_eye"):
        ys, xs = np.nonzero(labels == PART_CODES[p])
        if len(xs) < 3:
            return None
        cs.append((xs.mean(), ys.mean()))
    return float(np.hypot(cs[0][0] - cs[1][0], cs[0][1] - cs[1][1]))


def _largest_component(m: np.ndarray, keep_frac: float = 0.15) -> np.ndarray:
    """``m`` without components smaller than ``keep_frac`` of the largest (specks of the cut)."""
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 2:
        return m
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= keep_frac * areas.max()) + 1
    return np.isin(lab, keep)


def _contrast(bgr: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> float:
    import cv2

    if fg.sum() < 3 or bg.sum() < 3:
        return 0.0
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab).astype(np.float64)
    a, b = lab[fg], lab[bg]
    pooled = np.sqrt(0.5 * (a.var(0).sum() + b.var(0).sum()) + 1e-6)
    return float(np.linalg.norm(a.mean(0) - b.mean(0)) / pooled)


def refine_labels(
    image: np.ndarray, labels: np.ndarray, cfg: RefineConfig = RefineConfig(), report: dict | None = None
) -> np.ndarray:
    """Labels ``(H, W)`` with the parts of ``cfg.parts`` cut along the image's colour edges (see the
    module docstring). ``image`` RGB uint8 (H, W, 3). Returns a new array. ``report``, when given,
    receives per group ``"kept"`` or the reason it fell back."""
    # work in the face's box (plus half its size: the windows reach ~0.2 face widths out), so a
    # 12 MP frame costs what its face costs
    rows = np.flatnonzero((labels > PART_CODES["skin"]).any(1))
    if not len(rows):
        return labels.copy()
    cols = np.flatnonzero((labels[rows[0] : rows[-1] + 1] > PART_CODES["skin"]).any(0))
    pad = max(rows[-1] - rows[0], cols[-1] - cols[0]) // 2 + 4
    h, w = labels.shape
    y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)
    x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)
    out = labels.copy()
    out[y0:y1, x0:x1] = _refine_window(image[y0:y1, x0:x1], labels[y0:y1, x0:x1], cfg, report)
    return out


def _refine_window(image: np.ndarray, labels: np.ndarray, cfg: RefineConfig, report: dict | None) -> np.ndarray:
    import cv2

    out = labels.copy()
    iod = _iod(labels)
    if iod is None:
        iod = 0.3 * float(np.sqrt((labels > 0).sum()))  # one eye hidden: from the face size
    band = max(2, int(round(cfg.band * iod)))
    h, w = labels.shape
    bgr = np.ascontiguousarray(image[..., ::-1])
    for group in GROUPS:
        if not set(group) & set(cfg.parts):
            continue
        codes = [PART_CODES[p] for p in group]
        base = np.isin(labels, codes)
        area = int(base.sum())
        name = "+".join(group)
        if area < 12:
            if report is not None:
                report[name] = "too small"
            continue
        ys, xs = np.nonzero(base)
        m = 3 * band
        x0, x1 = max(xs.min() - m, 0), min(xs.max() + m + 1, w)
        y0, y1 = max(ys.min() - m, 0), min(ys.max() + m + 1, h)
        b = base[y0:y1, x0:x1].astype(np.uint8)
        inner = cv2.erode(b, _disk(band))
        outer = cv2.dilate(b, _disk(band))
        gc = np.full(b.shape, cv2.GC_BGD, np.uint8)
        gc[outer > 0] = cv2.GC_PR_BGD
        gc[b > 0] = cv2.GC_PR_FGD
        gc[inner > 0] = cv2.GC_FGD
        if not (gc == cv2.GC_FGD).any():  # a part thinner than the band: seed its skeleton
            gc[cv2.erode(b, _disk(max(1, band // 3))) > 0] = cv2.GC_FGD
        other = (labels[y0:y1, x0:x1] > PART_CODES["skin"]) & ~base[y0:y1, x0:x1]
        gc[other] = cv2.GC_BGD  # another part is not this one
        if not (gc == cv2.GC_FGD).any() or not (gc == cv2.GC_BGD).any():
            if report is not None:
                report[name] = "no seeds"
            continue
        win_bgr = bgr[y0:y1, x0:x1]
        contrast = _contrast(win_bgr, gc == cv2.GC_FGD, (gc == cv2.GC_BGD) & ~other)
        if contrast < cfg.min_contrast:
            if report is not None:
                report[name] = f"kept landmarks (colour contrast {contrast:.2f})"
            continue
        k = min(1.0, cfg.max_band_px / band)  # cut large faces at a coarser scale
        if k < 1.0:
            size = (max(4, int(round(b.shape[1] * k))), max(4, int(round(b.shape[0] * k))))
            win_bgr = cv2.resize(win_bgr, size, interpolation=cv2.INTER_AREA)
            gc = cv2.resize(gc, size, interpolation=cv2.INTER_NEAREST)
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        try:
            cv2.setRNGSeed(0)  # GrabCut seeds its colour models by k-means: the same view, the same cut
            cv2.grabCut(np.ascontiguousarray(win_bgr), gc, None, bgd, fgd, cfg.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            if report is not None:
                report[name] = "grabcut failed"
            continue
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.float32)
        if k < 1.0:
            fg = cv2.resize(fg, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_LINEAR)
        cut = fg > 0.5
        win = out[y0:y1, x0:x1]
        lab_win = labels[y0:y1, x0:x1]
        # each landmark part of the group takes the cut pixels nearer to it than to the other
        # part, and is checked (and kept or left as it was) on its own: an open mouth's teeth
        # split the lips' cut, and one lip can fail while the other succeeds
        if len(codes) == 1:
            owner = np.full(b.shape, codes[0], np.uint8)
        else:
            dists = [cv2.distanceTransform((lab_win != c).astype(np.uint8), cv2.DIST_L2, 3) for c in codes]
            owner = np.asarray(codes, np.uint8)[np.argmin(np.stack(dists), 0)]
        verdicts = []
        for c, part in zip(codes, group):
            if part not in cfg.parts:
                continue
            mine = lab_win == c
            part_cut = _largest_component(cut & (owner == c))
            ratio = part_cut.sum() / max(int(mine.sum()), 1)
            iou = (part_cut & mine).sum() / max((part_cut | mine).sum(), 1)
            if mine.sum() < 12 or not (cfg.min_area_ratio <= ratio <= cfg.max_area_ratio and iou >= cfg.min_iou):
                verdicts.append(f"{part}: kept landmarks (area x{ratio:.2f}, IoU {iou:.2f})")
                continue
            # pixels the cut drops become skin; pixels it takes join the part (never over another)
            win[mine & ~part_cut] = PART_CODES["skin"]
            take = part_cut & (win <= PART_CODES["skin"])
            win[take] = c
            verdicts.append(f"{part}: kept")
        if report is not None:
            report[name] = "kept" if all(v.endswith(": kept") for v in verdicts) else "; ".join(verdicts)
    return out
