"""The ``ingest`` stage: validate the session against its rig and decode every photo once, so a
truncated or corrupt photo stops the run here, named. Writes ``ingest/manifest.json`` (views with
their sizes and hashes, the rig and session files' hashes, the number of board shots)."""

from __future__ import annotations

from typing import Any

from ..io import atomic_dir, read_image, sha256_file, write_json
from ..stagedef import Context

FORMAT = "mvrecon-ingest/1"


def run(ctx: Context) -> dict[str, Any]:
    from ..calibrate.stage import calib_files

    s = ctx.session
    views = []
    for v in s.views():
        img = read_image(v.image)  # a full decode: a truncated or corrupt photo stops here, named
        views.append(
            {
                "key": v.key,
                "frame": v.frame,
                "camera": v.camera,
                "image": ctx.rel(v.image),
                "size": [int(img.shape[1]), int(img.shape[0])],
                "sha256": ctx.digests.get(f"file:{v.image}") or sha256_file(v.image),
            }
        )
    with atomic_dir(s.stage_dir("ingest")) as tmp:
        write_json(
            tmp / "manifest.json",
            {
                "format": FORMAT,
                "subject": s.subject,
                "rig": str(s.rig_path),
                "rig_sha256": sha256_file(s.rig_path),
                "session_sha256": sha256_file(s.session_file),
                "cameras": s.rig.names,
                "frames": [f.name for f in s.frames],
                "views": views,
                "scan": bool(s.scan),
                "board_shots": len(calib_files(ctx)),
            },
        )
    return {"views": len(s.views()), "cameras": len(s.rig), "frames": len(s.frames)}
