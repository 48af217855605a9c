"""Benchmark of the texture and export stages on a synthetic session (mvrecon.synth).

    python bench/export.py [--size 2048] [--cameras 5] [--session PATH] [--keep DIR]

Without ``--session`` a synthetic session is rendered (ground truth from mvrecon.synth) and given a
"fit" made of its ground-truth coefficients, pose and lighting (per-view SH times the camera's
colour gain; the cameras' slight gamma and the detail the model cannot express are left as
errors). With ``--session`` an already fitted session is used as is (a synthetic one without a fit gets
the ground-truth "fit"). Prints one table: bake time,
export time, GLB size, triangles per LOD, Khronos validator result, the PSNR of the exported
textured asset re-rendered into every view against the undistorted photo over the facial skin,
and the game-readiness figures; the line before the last gives the ``--compress`` glb and the
USDZ sizes (``files: glb --compress X.XX MB, usdz Y.Y MB``), the last line is
``export: arkit N/52, skeleton yes|no, LOD flipped max X.XX %, unseen backdrop Y.Y %, glb Z.Z MB``.
Timings are wall-clock on a shared machine: read them as rough figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def fake_fit(root: Path) -> None:
    """Write ``fit/params.npz`` from the synthetic session's ground truth."""
    from mvrecon.geometry import matrix_to_axis_angle
    from mvrecon.io import write_npz
    gt = dict(np.load(root / "gt" / "gt.npz", allow_pickle=False))
    frames, cams = [str(f) for f in gt["frames"]], [str(c) for c in gt["cameras"]]
    views = [f"{f}_{c}" for f in frames for c in cams]
    gov = np.array([fi for fi in range(len(frames)) for _ in cams])
    pose = gt["head_to_world"]
    sh = np.stack([gt["sh"] * gt["camera_gain"][ci][None] for _ in frames for ci in range(len(cams))])
    N = gt["verts"].shape[1]
    write_npz(root / "fit" / "params.npz", alpha=gt["id_coeffs"], beta=gt["exp_coeffs"],
              rot=np.stack([matrix_to_axis_angle(p[:3, :3]) for p in pose]).astype(np.float32),
              trans=pose[:, :3, 3].astype(np.float32), log_scale=np.array(0.0, np.float32),
              deform=np.zeros((1, 3, 8, 8), np.float32), disp=np.zeros((len(views), 1, 16, 16), np.float32),
              sh=sh.astype(np.float32), albedo=np.full((1, 3, 8, 8), 0.5, np.float32), views=np.array(views),
              group_of_view=gov, groups=np.array(frames), mode=np.array("per_frame"),
              fused_disp_vertex=np.zeros(N, np.float32), model=np.array(str(gt["model"])))


def view_psnr(session, glb: Path) -> dict[str, float]:
    """PSNR (dB) per view of the exported skin, posed with the view's fitted expression (as morph
    weights) and pose, against the undistorted photo over facial-skin pixels."""
    from mvrecon.export import read_glb
    from mvrecon.fit.result import load_fit
    from mvrecon.parts import PART_CODES
    from mvrecon.render import render_mesh
    from mvrecon.texture.stage import bake_views

    import cv2

    head = load_fit(session.stage_dir("fit"))
    g = read_glb(glb)
    mesh = g.doc["meshes"][0]
    prim = next(p for p in mesh["primitives"] if g.doc["materials"][p["material"]]["name"] == "skin")
    pos0 = g.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    uv = g.accessor(prim["attributes"]["TEXCOORD_0"]).astype(np.float64)
    uv[:, 1] = 1 - uv[:, 1]
    idx = g.accessor(prim["indices"]).astype(np.int64).reshape(-1, 3)
    png = g.image("skin")
    tex = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64) / 255
    from mvrecon.texture.bake import srgb_decode
    from mvrecon.texture.stage import photo_response

    if photo_response(session) == "srgb":
        tex = srgb_decode(tex)          # the photos come back in linear light, as the fit sees them
    # which asset triangles are facial skin (face sub-mesh, no eyes)
    model = head.model
    good = np.isin(model.part_labels, [PART_CODES[p] for p in ("skin", "nose", "upper_lip", "lower_lip",
                                                                "left_brow", "right_brow")])
    a, b = model.submeshes["face"]
    # the asset is the neutral; a view of group gr shows the captured clip's keyframe gr
    targets = [g.accessor(t["POSITION"]) for t in prim.get("targets", [])]
    clip = None
    if g.doc.get("animations") and targets:
        clip = g.accessor(g.doc["animations"][0]["samplers"][0]["output"]).reshape(-1, len(targets))
    out = {}
    views = bake_views(session, head)
    for v in views:
        beta = clip[v.group] if clip is not None else np.zeros(len(targets))
        pos = pos0 + sum(w * d for w, d in zip(beta, targets) if w) if targets else pos0
        world = head.to_world(pos / head.scale, v.group)
        cam = v.camera
        with torch.no_grad():
            r = render_mesh(torch.as_tensor(world), torch.as_tensor(idx), torch.as_tensor(cam.K[None]),
                            torch.as_tensor(cam.world_to_cam[None]), cam.height, cam.width, uvs=torch.as_tensor(uv),
                            texture=torch.as_tensor(tex).permute(2, 0, 1), sh=torch.as_tensor(v.sh[None]))
        img = r.image[0].numpy()
        if v.bias is not None:
            img = img + v.bias              # the fit's image model: shaded albedo plus the view's colour bias
        # facial skin pixels: the asset triangles made of facial-skin model vertices
        tid = r.frags.tri_id[0].numpy()
        face_tri = _face_triangles(pos0, idx, head, good, a, b)
        m = (tid >= 0) & face_tri[np.clip(tid, 0, None)]
        mse = float(((img - v.image) ** 2)[m].mean()) if m.any() else float("nan")
        out[v.key] = 10 * np.log10(1 / mse) if m.any() else float("nan")
    return out


def _face_triangles(pos0, idx, head, good, a, b) -> np.ndarray:
    """(F,) bool: asset skin triangles whose corners are facial-skin model vertices (matched by
    position to the neutral model mesh, exact up to float32)."""
    from scipy.spatial import cKDTree

    neutral = head.neutral_model_space() * head.scale
    _, nn = cKDTree(neutral).query(pos0)
    ok = good[nn] & (nn >= a) & (nn < b)
    return ok[idx].all(1)


def game_figures(glb: Path, tex_dir: Path, skin_weight: np.ndarray, skin_mask: np.ndarray) -> dict:
    """The game-readiness figures of issue 22 from the written files: ARKit names matched,
    skeleton present, the largest share of flipped skin triangles over the LODs (a triangle whose
    face normal points against its corners' normals), the share of never-seen skin texels that
    are bluer than red (backdrop smeared into the atlas), and the file size."""
    import cv2

    from mvrecon.export import read_glb
    from mvrecon.export.arkit import ARKIT_NAMES

    g = read_glb(glb)
    names = g.doc["meshes"][0].get("extras", {}).get("targetNames", [])
    flips = []
    for mesh in g.doc["meshes"]:
        prim = next(p for p in mesh["primitives"] if g.doc["materials"][p["material"]]["name"] == "skin")
        p = g.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
        n = g.accessor(prim["attributes"]["NORMAL"]).astype(np.float64)
        t = g.accessor(prim["indices"]).astype(np.int64).reshape(-1, 3)
        fn = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
        flips.append(float(((fn * n[t].sum(1)).sum(1) < 0).mean()))
    alb = cv2.imread(str(tex_dir / "albedo.png"), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64)
    unseen = skin_mask & (skin_weight <= 0)
    blue = float((alb[..., 2] > alb[..., 0])[unseen].mean()) if unseen.any() else 0.0
    return {"arkit": sum(n in ARKIT_NAMES for n in set(names)), "skeleton": bool(g.doc.get("skins")),
            "flip_max": max(flips), "flips": flips, "unseen_blue": blue, "unseen_share": float(unseen[skin_mask].mean()),
            "glb_mb": glb.stat().st_size / 1e6, "lods_with_targets": sum("targets" in m["primitives"][0] for m in g.doc["meshes"]),
            "n_lods": len(g.doc["meshes"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="skin atlas height (texels)")
    ap.add_argument("--cameras", type=int, default=5)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--session", type=Path, default=None, help="an already fitted session")
    ap.add_argument("--keep", type=Path, default=None, help="render the synthetic session here (kept)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from mvrecon.export import ExportConfig, export
    from mvrecon.session import load_session
    from mvrecon.texture.bake import TextureConfig
    from mvrecon.texture.stage import run as run_texture

    rows = []
    tmp = None
    if args.session is None:
        from mvrecon.synth import SynthConfig, make_session

        root = args.keep or Path(tempfile.mkdtemp(prefix="mvrecon-bench-export-")) / "session"
        t = time.perf_counter()
        make_session(root, SynthConfig(cameras=args.cameras, width=args.width, height=args.height, board=False,
                                       supersample=1), overwrite=True)
        rows.append(("synthetic session render (s)", f"{time.perf_counter() - t:.1f}"))
        fake_fit(root)
        tmp = root
    else:
        root = args.session
        if not (root / "fit" / "params.npz").is_file() and (root / "gt" / "gt.npz").is_file():
            fake_fit(root)          # a synthetic session without a fit: use its ground truth
    session = load_session(root)
    t = time.perf_counter()
    tr = run_texture(TextureConfig(size=args.size), session)
    bake_s = time.perf_counter() - t
    t = time.perf_counter()
    er = export(session, ExportConfig(formats=("glb", "obj", "usdz"), texture_size=args.size))
    exp_s = time.perf_counter() - t
    glb = er.out_dir / "head.glb"
    t = time.perf_counter()
    erc = export(session, ExportConfig(formats=("glb",), texture_size=args.size, compress=True,
                                       out_dir=str(er.out_dir.parent / "export_compressed")))
    comp_s = time.perf_counter() - t
    comp_mb = (erc.out_dir / "head.glb").stat().st_size / 1e6
    usdz_mb = (er.out_dir / "head.usdz").stat().st_size / 1e6
    seen = float((tr.textures.skin_weight > 0)[tr.textures.skin_mask].mean())
    rows += [
        ("views", str(len(tr.textures.view_coverage))),
        (f"texture bake at {args.size} px (s)", f"{bake_s:.1f}"),
        ("skin texels seen (%)", f"{100 * seen:.1f}"),
        ("export glb+obj+usdz, 3 LODs (s)", f"{exp_s:.1f}"),
        ("head.glb size (MB), every LOD, textures once", f"{glb.stat().st_size / 1e6:.1f}"),
        ("head.glb --compress size (MB)", f"{comp_mb:.2f}"),
        ("head.usdz size (MB), LOD 0", f"{usdz_mb:.1f}"),
        ("export --compress (s)", f"{comp_s:.1f}"),
    ]
    for i, (f, n, v) in enumerate(zip(ExportConfig().lods, er.lod_triangles, er.lod_vertices)):
        rows.append((f"LOD{i} ({100 * f:g} %) triangles / vertices", f"{n:,} / {v:,}"))
    try:
        from mvrecon.export.validator import validate

        for path in [er.out_dir / x for x in er.files if x.endswith(".glb")] + [erc.out_dir / "head.glb"]:
            iss = validate(path)["issues"]
            rows.append((f"validator {path.parent.name}/{path.name} errors/warnings/infos",
                         f"{iss['numErrors']}/{iss['numWarnings']}/{iss['numInfos']}"))
    except Exception as e:  # noqa: BLE001 - the bench reports, it does not fail
        rows.append(("validator", f"unavailable ({e})"))
    gt_png = root / "gt" / "albedo.png"
    if gt_png.is_file():
        import cv2

        from mvrecon.texture.stage import load_textures

        # the synthetic albedo uses the same layout (model UV tiles side by side, v up)
        gt = cv2.imread(str(gt_png), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
        baked = load_textures(tr.out_dir).skin
        if gt.shape[1] == 2 * gt.shape[0]:
            gt = cv2.resize(gt, (baked.shape[1], baked.shape[0]), interpolation=cv2.INTER_AREA)
            seen_m = (tr.textures.skin_weight > 0) & tr.textures.skin_mask
            mse = float(((baked - gt) ** 2)[seen_m].mean())
            rows.append(("albedo vs ground truth, seen texels (dB)", f"{10 * np.log10(1 / mse):.1f}"))
    ps = view_psnr(session, glb)
    for k, p in ps.items():
        rows.append((f"PSNR {k} face (dB)", f"{p:.1f}"))
    rows.append(("PSNR mean (dB)", f"{np.nanmean(list(ps.values())):.1f}"))
    gf = game_figures(glb, tr.out_dir, tr.textures.skin_weight, tr.textures.skin_mask)
    rows += [
        ("ARKit blendshape names matched", f"{gf['arkit']}/52"),
        ("skeleton", "yes" if gf["skeleton"] else "no"),
        ("LODs with morph targets", f"{gf['lods_with_targets']}/{gf['n_lods']}"),
        ("flipped skin triangles per LOD (%)", " / ".join(f"{100 * f:.2f}" for f in gf["flips"])),
        ("unseen skin texels (%)", f"{100 * gf['unseen_share']:.1f}"),
        ("unseen skin texels bluer than red (%)", f"{100 * gf['unseen_blue']:.1f}"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'figure':<{w}}  value")
    print("-" * (w + 20))
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    print(f"files: glb --compress {comp_mb:.2f} MB, usdz {usdz_mb:.1f} MB")
    print(f"export: arkit {gf['arkit']}/52, skeleton {'yes' if gf['skeleton'] else 'no'}, "
          f"LOD flipped max {100 * gf['flip_max']:.2f} %, unseen backdrop {100 * gf['unseen_blue']:.1f} %, "
          f"glb {gf['glb_mb']:.1f} MB")
    if tmp is not None and args.keep is None:
        import shutil

        shutil.rmtree(tmp.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
