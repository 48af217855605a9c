"""Random mutations of ``session.json`` and ``rig.json`` (values swapped for hostile ones, keys
dropped or added, bytes flipped or cut): whatever the mutation, ``mvrecon session run --to ingest``
ends either well or with one ``error:`` line; a traceback never escapes, and nothing outside the
session is touched. Seeded and bounded (a fixed number of cases, and a time budget as a safety
net for slow machines; the assertions never depend on time)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
from hostile_case import assert_untouched, cli, snapshot

CASES = 160
BUDGET_S = 40.0

HOSTILE = [None, True, False, 0, -1, 7, 2**63, 10**40, 1e308, -1e-300, 0.5, "", " ", "../../victim", "/dev/zero",
           "/", "..", ".", "a" * 300, "\u202e", "images/a.png", "rig.json", "../rigs/r", 64, 48, [], {}, [[]],
           [1, 2, 3], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], {"a": "images/a.png"}, {"name": "f0"}, [None], {"": ""}]


def _containers(obj, out):
    if isinstance(obj, (dict, list)):
        out.append(obj)
        for v in (obj.values() if isinstance(obj, dict) else obj):
            _containers(v, out)
    return out


def _value(rng):
    return HOSTILE[rng.integers(len(HOSTILE))]


def mutate_tree(data, rng):
    """One random edit somewhere in a JSON tree (in place); returns the tree (or its replacement)."""
    if rng.random() < 0.03:
        return _value(rng)
    targets = _containers(data, [])
    if not targets:
        return data
    c = targets[rng.integers(len(targets))]
    op = rng.integers(4)
    if isinstance(c, dict):
        keys = list(c)
        if op == 0 or not keys:
            c[str(_value(rng))[:20] if rng.random() < 0.5 else "name"] = _value(rng)
        elif op == 1:
            del c[keys[rng.integers(len(keys))]]
        else:
            c[keys[rng.integers(len(keys))]] = _value(rng)
    else:
        if op == 0 or not c:
            c.append(_value(rng))
        elif op == 1:
            c.pop(rng.integers(len(c)))
        elif op == 2:
            c.append(c[rng.integers(len(c))])
        else:
            c[rng.integers(len(c))] = _value(rng)
    return data


def mutate_bytes(text: bytes, rng) -> bytes:
    b = bytearray(text)
    op = rng.integers(3)
    i = int(rng.integers(len(b) + 1))
    if op == 0:
        return bytes(b[:i])
    if op == 1 and b:
        b[min(i, len(b) - 1)] = int(rng.integers(256))
        return bytes(b)
    return bytes(b[:i] + bytes(rng.integers(0, 256, int(rng.integers(1, 8))).astype(np.uint8)) + b[i:])


def test_random_session_and_rig_files_never_escape_as_a_traceback(case):
    session_text = (case.root / "session.json").read_bytes()
    rig_text = case.rig_file.read_bytes()
    before = snapshot(case.tmp, skip=case.root)
    rng = np.random.default_rng(20)
    outcomes = {"ok": 0, "refused": 0}
    t0 = time.monotonic()
    for i in range(CASES):
        if time.monotonic() - t0 > BUDGET_S:
            break
        for d in ("ingest", "logs", "ingest.stale", "report.html"):
            p = case.root / d
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        texts = {"session": session_text, "rig": rig_text}
        for _ in range(int(rng.integers(1, 4))):
            which = "session" if rng.random() < 0.6 else "rig"
            try:
                data = json.loads(texts[which]) if rng.random() < 0.8 else None
            except ValueError:  # already broken by an earlier byte edit
                data = None
            if data is not None:
                texts[which] = json.dumps(mutate_tree(data, rng)).encode()
            else:
                texts[which] = mutate_bytes(texts[which], rng)
        (case.root / "session.json").write_bytes(texts["session"])
        case.rig_file.write_bytes(texts["rig"])
        out = cli("session", "run", case.root, "--to", "ingest")  # raises on a traceback
        if out.code == 0:
            outcomes["ok"] += 1
        else:
            lines = out.error_lines
            assert len(lines) == 1 and lines[0].startswith("error: "), (i, texts, out.stderr)
            outcomes["refused"] += 1
    case.rig_file.write_bytes(rig_text)  # the one file outside the session the test itself changed
    assert_untouched(case, before)
    # the mutations reach both outcomes: a fuzzer that only ever breaks the JSON tests nothing
    assert outcomes["refused"] >= 20 and outcomes["ok"] >= 3, outcomes
