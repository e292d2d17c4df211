"""Durations for people (issue 8, item 13: "3.6ks")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orch.core.timefmt import duration_text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (3.6, "3.6s"), (12, "12s"), (60, "1m"), (90, "1m30s"), (3600, "1h"),
    (5400, "1h30m"), (86400, "1d"), (90000, "1d1h"),
])
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


@given(st.floats(min_value=0, max_value=10 ** 9, allow_nan=False))
def test_never_a_shortened_number(seconds: float) -> None:
    text = duration_text(seconds)
    assert "k" not in text and "M" not in text and text[-1] in "smhd"
