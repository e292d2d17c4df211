"""Durations for people: ``45s``, ``12m30s``, ``1h``, ``2d3h`` — never ``3.6ks``.

Number shorteners (``1.8k``) are right for counts and wrong for time: an operator reads
"3.6ks" as nothing. Every text output that shows seconds uses :func:`duration_text`.
"""

from __future__ import annotations

_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def duration_text(seconds: float) -> str:
    """``seconds`` as the two largest units that matter; below a minute, seconds (one
    decimal under ten seconds)."""
    if seconds < 0:
        return "-" + duration_text(-seconds)
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    if seconds < 60:
        return f"{seconds:.0f}s"
    total = round(seconds)
    parts: list[str] = []
    for unit, size in (*_UNITS, ("s", 1)):
        if total >= size or (parts and size):
            count, total = divmod(total, size)
            if count:
                parts.append(f"{count}{unit}")
            if len(parts) == 2 or (parts and not count):
                break
    return "".join(parts[:2])
