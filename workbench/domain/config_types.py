"""The value types settings share (names, environments, positive numbers), apart from the
models that use them so that several settings modules can import them without a cycle."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, StrictInt

Environment = Literal["sandbox", "live"]
# The vault's and the connections' own name rule: nothing a shell or a terminal reads.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Positive = Annotated[StrictInt, Field(gt=0)]


def _positive_number(value: object) -> int | float:
    # One check instead of a union: a union's errors name its members (`per_second.int`).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be a number")
    if not (math.isfinite(value) and value > 0):
        raise ValueError("Input should be a finite number greater than 0")
    return value


PositiveNumber = Annotated[int | float, PlainValidator(_positive_number)]
