"""Operator switches read from the environment (the services take them as arguments)."""

from __future__ import annotations

import os
from collections.abc import Mapping

# WORKBENCH_INGEST_READER=0: prepare capture files in the ingesting process, without the
# forked reader process (for debugging, or a host where forking misbehaves).
INGEST_READER_ENV = "WORKBENCH_INGEST_READER"


def reader_process_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether `workbench ingest` prepares a capture file in a reader process (the default)."""
    return environ.get(INGEST_READER_ENV, "1").strip() != "0"
