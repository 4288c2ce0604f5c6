"""Small text helpers shared by screens: times, ages, counts and IDs that fit narrow columns."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.cells import cell_len


def clock_time(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")


def short_time(moment: datetime | None) -> str:
    """Month-day and time: enough to place an event, narrow enough for 80 columns."""
    return moment.strftime("%m-%d %H:%M:%S") if moment else "-"


def age(delta: timedelta | None) -> str:
    """A compact age: 42s, 7m, 3h, 12d."""
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def count(value: int) -> str:
    return f"{value:,}"


def truncate(text: str, width: int) -> str:
    """Cut to `width` cells with an ellipsis."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    out = []
    used = 0
    for char in text:
        size = cell_len(char)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def middle(text: str, width: int) -> str:
    """Cut from the middle: IDs keep their type prefix and their distinguishing tail."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width < 5:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return f"{text[:head]}…{text[-tail:]}"
