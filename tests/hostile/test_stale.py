"""No stale truth: the report shows only outputs whose provenance is current, and a stage that
fails takes its earlier outputs (and those made from them) out of the way."""

from __future__ import annotations

import numpy as np
from hostile_case import W, H, cli

from mvrecon.io import write_image, write_json
from mvrecon.provenance import PROVENANCE_FILE, Provenance, current_stages, output_hashes, read_provenance
from mvrecon.report.content import report_content
from mvrecon.session import load_session
from mvrecon.stages import STAGE_NAMES


def fake_stage(root, name, files, upstream=("ingest",), numbers=None):
    """A stage folder as a finished run leaves it, made from the current outputs of ``upstream``."""
    d = root / name
    for rel, writer in files.items():
        writer(d / rel)
    inputs = {f"stage:{u}": read_provenance(root / u).outputs_digest for u in upstream}
    prov = Provenance(name, "k", {}, {}, inputs, output_hashes(d), numbers or {}, 0.1)
    write_json(d / PROVENANCE_FILE, prov.to_dict())


def albedo(p):
    write_image(p, np.full((8, 8, 3), 200, np.uint8))


def metrics(p):
    write_json(p, {"realy": {"all_mm": 1.234}})


def test_report_shows_only_current_outputs(case):
    assert cli("session", "run", case.root, "--to", "ingest").code == 0
    root = case.root
    fake_stage(root, "texture", {"albedo.png": albedo}, numbers={"size": "8x8"})
    fake_stage(root, "evaluate", {"metrics.json": metrics})
    c = report_content(load_session(root))
    assert c.texture == root / "texture" / "albedo.png"
    assert c.metrics["evaluate"]["REALY all (mm), headline"] == 1.234 and c.metrics["texture"] == {"size": "8x8"}

    # an output changed by hand is no longer what the provenance says
    albedo_png = root / "texture" / "albedo.png"
    write_image(albedo_png, np.zeros((8, 8, 3), np.uint8))
    assert set(current_stages(root, STAGE_NAMES)) == {"ingest", "evaluate"}
    c = report_content(load_session(root))
    assert c.texture is None and "texture" not in c.metrics
    assert {r.stage: r.status for r in c.stages}["texture"] == "stale"

    # new photos: ingest is redone, so everything made from the old ingest is stale
    write_image(root / "images" / "a.png", np.full((H, W, 3), 7, np.uint8))
    assert cli("session", "run", root, "--to", "ingest").code == 0
    assert set(current_stages(root, STAGE_NAMES)) == {"ingest"}
    c = report_content(load_session(root))
    assert "evaluate" not in c.metrics and c.heatmap is None
    html = (root / "report.html").read_text()
    assert "1.234" not in html and 'evaluate</td><td><span class="badge stale">' in html


def test_failed_stage_moves_its_outputs_and_theirs_aside(case):
    root = case.root
    assert cli("session", "run", root, "--to", "ingest").code == 0
    fake_stage(root, "evaluate", {"metrics.json": metrics})
    # a photo cut short: its header still reads (the session loads), the ingest decode fails
    img = root / "images" / "b.png"
    img.write_bytes(img.read_bytes()[:200])
    out = cli("session", "run", root, "--to", "ingest")
    assert out.code != 0 and "b.png" in out.stderr
    assert not (root / "ingest").exists() and not (root / "evaluate").exists()
    assert (root / "ingest.stale" / "manifest.json").is_file() and (root / "evaluate.stale" / "metrics.json").is_file()
    html = (root / "report.html").read_text()
    assert "1.234" not in html and 'ingest</td><td><span class="badge failed">' in html


def test_report_of_a_session_that_no_longer_loads_is_moved_aside(case):
    root = case.root
    assert cli("session", "run", root, "--to", "ingest").code == 0
    assert (root / "report.html").is_file()
    case.edit_session(lambda d: d["frames"][0].update(name="../x"))
    assert cli("session", "run", root, "--to", "ingest").code != 0
    assert not (root / "report.html").exists() and (root / "report.stale.html").is_file()
