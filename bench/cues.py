"""Benchmark of the cues stage: time per view, and accuracy against known part masks and landmarks.

    python bench/cues.py speed [--repeats 15]          time per view (1024 px and larger views)
    python bench/cues.py folder DIR [--overlays OUT]    IoU per part + landmark error on triples
    python bench/cues.py session SESSION... [--overlays OUT]  the same on synthetic sessions (mvrecon.synth)
    python bench/cues.py synth OUT [--seeds 1 2] [--cameras 6]  render synthetic sessions, then ``session``
    python bench/cues.py overlay PHOTO OUT.png          landmarks (with iBUG numbers) + parts, to look at

``session`` reads a session made by ``mvrecon.synth.generate.make_session``: its views, the true
part labels ``gt/parts/<frame>_<camera>.png`` and the true projected landmarks with visibility
``gt/landmarks2d.json`` (landmark errors count visible landmarks only).
``folder`` reads, for every image ``NAME.png`` / ``NAME.jpg`` in DIR, the true part labels
``NAME.labels.png`` (uint8 codes of ``mvrecon.parts.PART_CODES``) and the true iBUG-68 landmarks
``NAME.lm68.txt`` (68 rows ``x y`` in pixels, centres at integer coordinates) or ``NAME.lm68.npy``;
either may be missing. A synthetic session renderer (``mvrecon/synth``) writes such triples.
Prints tables; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "2")

from mvrecon.cues import CuesConfig, detect, draw_overlay, get_parser, process_image  # noqa: E402
from mvrecon.io import read_image, write_image  # noqa: E402
from mvrecon.parts import PART_CODES, PART_NAMES, part_label_image  # noqa: E402

GOALS = {"skin": 0.8, "nose": 0.8, "upper_lip": 0.8, "lower_lip": 0.8,
         "right_eye": 0.6, "left_eye": 0.6, "right_brow": 0.6, "left_brow": 0.6}


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)] if rows else [len(h) for h in header]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def _views_for_speed() -> list[tuple[str, np.ndarray]]:
    import cv2
    from skimage import data

    a = data.astronaut()
    v1024 = cv2.resize(a, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # face ~220 px
    # a 1024 x 768 view with the face ~110 px: more of the frame is background
    v1024s = np.full((768, 1024, 3), 180, np.uint8)
    v1024s[128:640, 256:768] = a
    # a 12 MP studio frame with a ~300 px face
    big = np.full((3000, 4000, 3), 170, np.uint8)
    f = cv2.resize(a, None, fx=2.7, fy=2.7, interpolation=cv2.INTER_CUBIC)
    big[1000 : 1000 + 1382, 1300 : 1300 + 1382] = f[:1382, :1382]
    # a small face (~100 px) in a 4000 x 3000 frame: found by the tile search
    tiny = np.full((3000, 4000, 3), 170, np.uint8)
    tiny[2200:2660, 2900:3360] = cv2.resize(a, (460, 460), interpolation=cv2.INTER_AREA)
    return [("1024x1024 face 220px", v1024), ("1024x768 face 110px", v1024s),
            ("4000x3000 face 300px", big), ("4000x3000 face 100px", tiny)]


def speed(repeats: int) -> None:
    import torch

    torch.set_num_threads(2)
    cfg = CuesConfig()
    parser = get_parser(cfg.parser)
    rows = []
    for name, img in _views_for_speed():
        cues = detect(img, cfg.detect)  # warm-up: graphs are built on first use
        if cues is None:
            rows.append([name, "no face", "", "", "", "", ""])
            continue
        t_det, t_parse, t_ov = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            cues = detect(img, cfg.detect)
            t1 = time.perf_counter()
            labels = parser.parse(img, cues)
            t2 = time.perf_counter()
            draw_overlay(img, labels, cues, cfg.overlay_max_side)
            t3 = time.perf_counter()
            t_det.append(t1 - t0), t_parse.append(t2 - t1), t_ov.append(t3 - t2)
        det, par, ov = (1000 * float(np.median(t)) for t in (t_det, t_parse, t_ov))
        # the whole per-view stage step: hash, decode, detect, label, overlay, write three files
        with tempfile.TemporaryDirectory() as tmp:
            photo = write_image(Path(tmp) / "view.png", img)
            redo = dataclasses.replace(cfg, overwrite=True)
            t_all = []
            for _ in range(max(3, repeats // 3)):
                t0 = time.perf_counter()
                process_image(photo, Path(tmp) / "out", redo, parser=parser)
                t_all.append(time.perf_counter() - t0)
        rows.append([name, cues.method, f"{det:.1f}", f"{par:.1f}", f"{ov:.1f}", f"{det + par:.1f}",
                     f"{1000 * np.median(t_all):.1f}"])
    print(f"cues time per view, median of {repeats} (ms; 2-core CPU shared with other jobs, noisy)")
    print(_table(["view", "found by", "detect+mesh", "labels", "overlay", "cues (detect+labels)",
                  "stage step (read+all files)"], rows))
    print("goal: under 100 ms per 1024 px view")


def _read_lm(stem: Path) -> np.ndarray | None:
    for ext, load in ((".lm68.txt", np.loadtxt), (".lm68.npy", np.load)):
        p = stem.with_name(stem.name + ext)
        if p.is_file():
            lm = np.asarray(load(p), np.float64).reshape(68, 2)
            return lm
    return None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def _folder_items(root: Path):
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")
                    and not p.name.endswith(".labels.png"))
    if not images:
        sys.exit(f"{root}: no images")
    for p in images:
        stem = p.with_suffix("")
        lab_path = stem.with_name(stem.name + ".labels.png")
        yield p.stem, p, (lab_path if lab_path.is_file() else None), _read_lm(stem), None, None, None


def _session_items(root: Path):
    import json

    from mvrecon.session import Session

    session = Session.load(root)
    gt = json.loads((root / "gt" / "landmarks2d.json").read_text())["views"]
    for v in session.views():
        lab = root / "gt" / "parts" / f"{v.key}.png"
        rec = gt.get(v.key)
        lm = np.asarray(rec["points"], np.float64) if rec else None
        vis = np.asarray(rec["visible"], bool) if rec else None
        yield v.key, v.image, (lab if lab.is_file() else None), lm, vis, session.rig[v.camera], (str(root), v.frame)


def _label_all(parser, detected: list, per_view: bool) -> tuple[list, list]:
    """Labels of every detected item ``(img, cues, camera, frame)`` and the time per view (s):
    a synchronized frame's views together (``parser.parse_frame``) unless ``per_view``."""
    groups: dict = {}
    for i, (_, _, camera, frame) in enumerate(detected):
        joint = not per_view and frame is not None and camera is not None and hasattr(parser, "parse_frame")
        groups.setdefault(frame if joint else ("view", i), []).append(i)
    labels, times = [None] * len(detected), [0.0] * len(detected)
    for key, idx in groups.items():
        t0 = time.perf_counter()
        if len(idx) >= 2 and key[0] != "view":
            out = parser.parse_frame([detected[i][0] for i in idx], [detected[i][1] for i in idx],
                                     [detected[i][2] for i in idx])
        else:
            out = [parser.parse(detected[i][0], detected[i][1], camera=detected[i][2]) for i in idx]
        dt = (time.perf_counter() - t0) / len(idx)
        for i, lab in zip(idx, out):
            labels[i], times[i] = lab, dt
    return labels, times


def evaluate(items, title: str, overlays: Path | None, parser_name: str = "auto") -> dict:
    """Detect and label every item, compare with the truth, print the tables; returns the numbers.
    ``parser_name``: a registered parser; ``NAME:view`` labels a session's views one by one
    instead of a frame's views together (parsers with ``parse_frame``)."""
    cfg = CuesConfig()
    name_only, _, mode = parser_name.partition(":")
    parser = get_parser(name_only)
    one_by_one = mode == "view"
    frames = hasattr(parser, "parse_frame") and not one_by_one
    label = parser.name + (" per view" if one_by_one else " frame fits" if frames else "")
    title = f"{title} (parser {label})"
    parts = PART_NAMES[1:]
    per_view, oracle, names, lm_err, nme, missed, times, frontal = [], [], [], [], [], [], [], []
    vis_pairs = []  # (confidence, truly visible) per landmark
    n = 0
    items = list(items)
    detected, kept = [], []
    for it in items:
        name, path, lab_path, lm, vis, camera = it[:6]
        n += 1
        img = read_image(path)
        t0 = time.perf_counter()
        cues = detect(img, cfg.detect)
        times.append(time.perf_counter() - t0)
        if cues is None:
            missed.append(name)
            continue
        detected.append((img, cues, camera, it[6] if len(it) > 6 else None))
        kept.append(it)
    all_labels, label_times = _label_all(parser, detected, one_by_one)
    for it, (img, cues, camera, _), pred in zip(kept, detected, all_labels):
        name, path, lab_path, lm, vis, camera = it[:6]
        if overlays is not None:
            write_image(overlays / f"{name}.overlay.png", draw_overlay(img, pred, cues))
        if lab_path is not None:
            true = read_image(lab_path, gray=True)
            per_view.append([iou(pred == PART_CODES[p], true == PART_CODES[p]) for p in parts])
            names.append(name)
            # near-frontal when the two true eye widths agree within 30 % (|yaw| below ~35 degrees)
            if lm is not None:
                wr, wl = np.linalg.norm(lm[39] - lm[36]), np.linalg.norm(lm[45] - lm[42])
                frontal.append(min(wr, wl) / max(wr, wl) >= 0.7)
            else:
                frontal.append(True)
            if lm is not None:
                # the same polygons drawn from the TRUE landmarks: how far the masks can get with
                # perfect landmarks (the rest is the definition itself and the render's triangles)
                ideal = part_label_image(lm, *true.shape)
                oracle.append([iou(ideal == PART_CODES[p], true == PART_CODES[p]) for p in parts])
        if lm is not None:
            e = np.linalg.norm(cues.points68 - lm, axis=1)
            if vis is not None:
                e = np.where(vis, e, np.nan)
                vis_pairs.append(np.stack([cues.conf68, vis.astype(float)], 1))
            lm_err.append(e)
            iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
            nme.append(e / iod)
    print(f"{title}: {n} views; no face found in {len(missed)}{': ' + ', '.join(missed) if missed else ''}")
    out: dict = {"missed": missed}
    if per_view:
        m = np.array(per_view)
        o = np.array(oracle) if oracle else np.full_like(m, np.nan)
        rows = [[p, f"{np.nanmean(m[:, i]):.3f}", f"{np.nanmin(m[:, i]):.3f}", f"{GOALS[p]:.1f}",
                 "yes" if np.nanmean(m[:, i]) >= GOALS[p] else "no", f"{np.nanmean(o[:, i]):.3f}"]
                for i, p in enumerate(parts)]
        print(f"\nIoU per part over {len(m)} views with true labels")
        print(_table(["part", "mean IoU", "worst view", "goal", "met", "polygons of true landmarks"], rows))
        f = np.array(frontal)
        if f.any() and (~f).any():
            print(f"\nmean IoU, {f.sum()} near-frontal views / {(~f).sum()} turned views (eye widths differ by > 30 %)")
            print(_table(["part", "near-frontal", "turned"],
                         [[p, f"{np.nanmean(m[f, i]):.3f}", f"{np.nanmean(m[~f, i]):.3f}"] for i, p in enumerate(parts)]))
        print("\nIoU per view")
        print(_table(["view"] + [p.replace("_", " ") for p in parts],
                     [[v] + [f"{x:.2f}" for x in row] for v, row in zip(names, m)]))
        out["iou"] = dict(zip(parts, np.nanmean(m, 0)))
    if lm_err:
        groups = {"all 68": slice(0, 68), "jaw 0-16": slice(0, 17), "brows 17-26": slice(17, 27),
                  "nose 27-35": slice(27, 36), "eyes 36-47": slice(36, 48), "lips 48-67": slice(48, 68)}
        E, N = np.stack(lm_err), np.stack(nme)
        rows = [[g, f"{np.nanmedian(E[:, s]):.2f}", f"{np.nanpercentile(E[:, s], 90):.2f}",
                 f"{100 * np.nanmedian(N[:, s]):.1f}"] for g, s in groups.items()]
        vis_note = " (visible landmarks only)" if any(np.isnan(E).ravel()) else ""
        print(f"\nlandmark error over {len(lm_err)} views{vis_note} (pixels; NME = error / inter-ocular distance)")
        print(_table(["landmarks", "median px", "p90 px", "median NME %"], rows))
        out["median_px"] = float(np.nanmedian(E))
    if vis_pairs:
        cv = np.concatenate(vis_pairs)
        conf, truth = cv[:, 0], cv[:, 1] > 0.5
        rows = []
        for th in (0.2, 0.35, 0.5):
            pred = conf >= th
            rows.append([f">= {th}", f"{100 * (pred == truth).mean():.1f}",
                         f"{100 * (pred & truth).sum() / max(1, truth.sum()):.1f}",
                         f"{100 * (~pred & ~truth).sum() / max(1, (~truth).sum()):.1f}"])
        print(f"\nlandmark confidence vs true visibility ({len(cv)} landmarks, {100 * truth.mean():.0f} % visible)")
        print(_table(["called visible if conf", "agreement %", "visible found %", "hidden found %"], rows))
    print(f"\ndetect time per view: median {1000 * np.median(times):.1f} ms; part labels "
          f"({parser.name}): median {1000 * np.median(label_times):.1f} ms")
    out["parser"] = label
    return out


def compare(results: list[dict]) -> None:
    """One table: mean IoU per part for each parser evaluated on the same views."""
    if len(results) < 2 or not all("iou" in r for r in results):
        return
    parts = PART_NAMES[1:]
    rows = [[p, f"{GOALS[p]:.1f}"] + [f"{r['iou'][p]:.3f}" for r in results] for p in parts]
    print("mean IoU per part, parsers side by side")
    print(_table(["part", "goal"] + [r["parser"] for r in results], rows))


def synth(out: Path, seeds: list[int], cameras: int, overlays: Path | None, parsers: list[str]) -> None:
    from mvrecon.synth.config import SynthConfig
    from mvrecon.synth.generate import make_session

    for seed in seeds:
        root = out / f"seed{seed}"
        if not (root / "session.json").is_file():
            t0 = time.perf_counter()
            make_session(root, SynthConfig(seed=seed, cameras=cameras, board=False), overwrite=True)
            print(f"rendered {root} in {time.perf_counter() - t0:.0f} s")
    roots = [out / f"seed{seed}" for seed in seeds]
    results = []
    for name in parsers:
        results.append(evaluate((it for r in roots for it in _session_items(r)),
                                f"synthetic sessions {', '.join(str(r) for r in roots)}", overlays, name))
        print()
    compare(results)


def overlay(photo: Path, out: Path) -> None:
    """The overlay with every iBUG index written next to its point, upscaled for reading."""
    import cv2

    img = read_image(photo)
    cues = detect(img)
    if cues is None:
        sys.exit(f"{photo}: no face found")
    labels = get_parser("landmarks").parse(img, cues)
    ov = draw_overlay(img, labels, cues)
    x0, y0, x1, y1 = cues.box
    pad = 0.4 * (x1 - x0)
    x0, y0 = int(max(0, x0 - pad)), int(max(0, y0 - pad))
    x1, y1 = int(min(img.shape[1], x1 + pad)), int(min(img.shape[0], y1 + pad))
    s = max(1.0, 900 / max(x1 - x0, y1 - y0))
    crop = cv2.resize(ov[y0:y1, x0:x1], None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    for i, (x, y) in enumerate(cues.points68):
        u, v = int((x - x0 + 0.5) * s - 0.5), int((y - y0 + 0.5) * s - 0.5)
        cv2.putText(crop, str(i), (u + 3, v - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1, cv2.LINE_AA)
    write_image(out, crop)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--repeats", type=int, default=15)
    f = sub.add_parser("folder")
    f.add_argument("dir", type=Path)
    f.add_argument("--overlays", type=Path, default=None, help="write NAME.overlay.png here")
    se = sub.add_parser("session")
    se.add_argument("dirs", type=Path, nargs="+", help="one or more sessions, pooled")
    se.add_argument("--overlays", type=Path, default=None, help="write <view>.overlay.png here")
    sy = sub.add_parser("synth")
    sy.add_argument("out", type=Path)
    sy.add_argument("--seeds", type=int, nargs="+", default=[1])
    sy.add_argument("--cameras", type=int, default=6)
    sy.add_argument("--overlays", type=Path, default=None)
    for q in (f, se, sy):
        q.add_argument("--parsers", nargs="+", default=["auto"],
                       help="face parsers to evaluate (mvrecon.cues.parser_names()); several: a comparison "
                            "table. NAME:view labels a session's views one by one, not a frame's together")
    o = sub.add_parser("overlay")
    o.add_argument("photo", type=Path)
    o.add_argument("out", type=Path)
    a = ap.parse_args()
    if a.cmd == "speed":
        speed(a.repeats)
    elif a.cmd == "folder":
        compare([evaluate(_folder_items(a.dir), str(a.dir), a.overlays, p) for p in a.parsers])
    elif a.cmd == "session":
        compare([evaluate((it for d in a.dirs for it in _session_items(d)), f"sessions {', '.join(map(str, a.dirs))}",
                          a.overlays, p) for p in a.parsers])
    elif a.cmd == "synth":
        synth(a.out, a.seeds, a.cameras, a.overlays, a.parsers)
    else:
        overlay(a.photo, a.out)


if __name__ == "__main__":
    main()
