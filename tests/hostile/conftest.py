"""The fixture of the hostile cases (see hostile_case.py)."""

from __future__ import annotations

import pytest
from hostile_case import Case, make_case


@pytest.fixture
def case(tmp_path) -> Case:
    return make_case(tmp_path)
