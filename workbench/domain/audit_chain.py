"""The audit chain's arithmetic: how an entry is hashed or MACed, and how a walk along the
chain finds the first broken entry and names the cause. Pure: no store, no files.

Two schemes live in one chain (see docs/audit.md):
- "sha256" (legacy, before revision 0003): SHA-256 over the previous hash and the entry's
  canonical JSON. Anyone with write access can recompute it; kept so old trails still verify.
- "hmac-sha256": every field gets its own keyed digest, HMAC(key, field name + canonical
  JSON value), and the entry's MAC is HMAC(key, previous MAC + the field digests). An export
  may replace a redacted field by its digest, and the entry still verifies with the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS_HASH = "0" * 64
LEGACY = "sha256"
KEYED = "hmac-sha256"
SCHEMES = (LEGACY, KEYED)

# Every field an entry's MAC covers, in the order it covers them.
FIELDS = ("seq", "at", "actor", "action", "target_type", "target_id", "before", "after", "reason")

# What verify names as the cause of a break.
EDITED, DELETED, REORDERED, FORGED, TRUNCATED = "edited", "deleted", "reordered", "forged", "truncated"


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def legacy_content(fields: Mapping[str, Any]) -> bytes:
    return canonical({name: fields[name] for name in FIELDS})


def legacy_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + legacy_content(fields)).hexdigest()


def field_digest(key: bytes, name: str, value: Any) -> str:
    """Keyed, so a digest in an export confirms no guess about the value it stands for."""
    return hmac.new(key, b"wb-audit-field/1\n" + name.encode() + b"\n" + canonical(value), hashlib.sha256).hexdigest()


def field_digests(key: bytes, fields: Mapping[str, Any]) -> dict[str, str]:
    return {name: field_digest(key, name, fields[name]) for name in FIELDS}


def entry_mac(key: bytes, prev_hash: str, digests: Mapping[str, str]) -> str:
    message = b"wb-audit-entry/1\n" + prev_hash.encode() + b"\n" + b"".join(
        f"{name}={digests[name]}\n".encode() for name in FIELDS)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """The chain head as last checkpointed outside the database (see services/audit_anchor)."""
    seq: int
    mac: str
    first_keyed: int  # the first keyed entry: no plain-hash entry may follow it


@dataclass(frozen=True)
class Break:
    seq: int
    cause: str
    message: str


class MissingKey(Exception):
    """A keyed entry reached while no key is at hand."""


class ChainWalker:
    """Checks entries one by one, in the order the store (or an export) gives them.

    `locate(hash)` says which entry, if any, carries a hash: a link to an entry elsewhere in the
    chain means the entries were reordered, a link to nothing means this one was edited. The
    store gives entries in sequence order; an export may not, and `listed(seq)` says whether a
    missing entry is further on in it (reordered, not deleted).
    """

    def __init__(self, key: bytes | None, anchor: Anchor | None, locate: Callable[[str], int | None],
                 listed: Callable[[int], bool] = lambda seq: False) -> None:
        self.key = key
        self.anchor = anchor
        self.locate = locate
        self.listed = listed  # is an entry elsewhere in the input (an export, out of order)
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.keyed_seen = False
        self.checked = 0

    @property
    def last_seq(self) -> int:
        return self.expected_seq - 1

    def step(self, entry: Mapping[str, Any], digests: Mapping[str, str] | None = None) -> Break | None:
        """`entry` holds FIELDS plus scheme, prev_hash and hash; `digests` stand in for
        fields an export redacted."""
        seq = entry["seq"]
        if seq != self.expected_seq:
            if seq > self.expected_seq and not self.listed(self.expected_seq):
                return Break(self.expected_seq, DELETED, f"entry {self.expected_seq} is missing (deleted)")
            if seq > self.expected_seq:
                return Break(self.expected_seq, REORDERED, f"entry {seq} comes where entry {self.expected_seq} "
                                                           "belongs (reordered)")
            return Break(seq, REORDERED, f"entry {seq} appears again after entry {self.last_seq} (reordered)")
        scheme = entry["scheme"]
        if scheme not in SCHEMES:
            return Break(seq, FORGED, f"entry {seq} has an unknown scheme (forged)")
        if scheme == LEGACY and (self.keyed_seen or (self.anchor is not None and seq >= self.anchor.first_keyed)):
            return Break(seq, FORGED, f"entry {seq} carries a plain hash where a keyed MAC belongs "
                                      "(forged or rewritten without the key)")
        if entry["prev_hash"] != self.prev_hash:
            elsewhere = self.locate(entry["prev_hash"])
            if elsewhere is not None and elsewhere != seq - 1:
                return Break(seq, REORDERED, f"entry {seq} follows entry {elsewhere}, not entry {seq - 1} (reordered)")
            return Break(seq, EDITED, f"entry {seq} does not follow entry {seq - 1} (edited)")
        if scheme == LEGACY:
            # A legacy entry an export redacted cannot be rehashed: its link and the export's
            # seal vouch for it (docs/audit.md).
            if not digests and legacy_hash(entry["prev_hash"], entry) != entry["hash"]:
                return Break(seq, EDITED, f"entry {seq} was altered (edited: its hash does not match)")
        else:
            if self.key is None:
                raise MissingKey
            given = digests or {}
            computed = {n: given[n] if n in given else field_digest(self.key, n, entry[n]) for n in FIELDS}
            if not hmac.compare_digest(entry_mac(self.key, entry["prev_hash"], computed), entry["hash"]):
                if self.anchor is not None and seq > self.anchor.seq:
                    return Break(seq, FORGED, f"entry {seq} was appended without the key (forged: its MAC does "
                                              "not verify)")
                return Break(seq, EDITED, f"entry {seq} was altered (edited: its MAC does not verify)")
            self.keyed_seen = True
        if self.anchor is not None and seq == self.anchor.seq and entry["hash"] != self.anchor.mac:
            return Break(seq, EDITED, f"entry {seq} is not the entry checkpointed outside the database (edited)")
        self.prev_hash = entry["hash"]
        self.expected_seq += 1
        self.checked += 1
        return None

    def truncated(self) -> Break | None:
        """After the last entry: is the checkpoint ahead of the chain?"""
        if self.anchor is not None and self.anchor.seq > self.last_seq:
            return Break(self.last_seq + 1, TRUNCATED,
                         f"the chain ends at entry {self.last_seq} but the checkpoint kept outside the database "
                         f"says it reaches entry {self.anchor.seq}: its tail was cut off (truncated); if the "
                         "store was restored from a backup or recreated on purpose, remove its checkpoint "
                         "file (docs/audit.md)")
        return None
