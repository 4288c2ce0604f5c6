"""The failure taxonomy: every failure has exactly one category, each with its own policy."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    VALIDATION = "validation"
    CONTRACT_MISMATCH = "contract_mismatch"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    DUPLICATE = "duplicate"
    STALE_DATA = "stale_data"
    MISSING_DEPENDENCY = "missing_dependency"
    PROVIDER_OUTAGE = "provider_outage"
    MAPPING_FAILURE = "mapping_failure"
    BUSINESS_RULE_REJECTION = "business_rule_rejection"
    UNKNOWN = "unknown"


class TriageState(StrEnum):
    OPEN = "open"
    RETRYING = "retrying"
    NEEDS_REVIEW = "needs_review"
    RESOLVED = "resolved"
    IGNORED = "ignored"


CLOSED_STATES: frozenset[TriageState] = frozenset({TriageState.RESOLVED, TriageState.IGNORED})


class Recovery(StrEnum):
    """What the system does about a failure before any person looks at it."""

    STOP_CONNECTION = "stop_connection"
    NEEDS_REVIEW = "needs_review"
    AUTO_RETRY = "auto_retry"
    SAFE_RETRY = "safe_retry"
    NO_OP = "no_op"
    WAIT_FOR_DEPENDENCY = "wait_for_dependency"
    DELAYED_REPLAY = "delayed_replay"
    BLOCK_WORKFLOW = "block_workflow"


@dataclass(frozen=True, slots=True)
class Policy:
    recovery: Recovery
    initial_state: TriageState
    alert: bool
    retryable: bool
    reviewer: str  # who is expected to act: "operator", "engineer", "system", "credential owner"
    description: str


_P = Policy
_T = TriageState
_R = Recovery

POLICIES: dict[Category, Policy] = {
    Category.AUTHENTICATION: _P(_R.STOP_CONNECTION, _T.NEEDS_REVIEW, True, False, "credential owner",
                                "stop the connection's calls, alert, needs credential rotation"),
    Category.AUTHORIZATION: _P(_R.NEEDS_REVIEW, _T.NEEDS_REVIEW, False, False, "operator",
                               "needs review of scope or permission"),
    Category.VALIDATION: _P(_R.NEEDS_REVIEW, _T.NEEDS_REVIEW, False, False, "operator",
                            "needs review: a person corrects data, then replays"),
    Category.CONTRACT_MISMATCH: _P(_R.NEEDS_REVIEW, _T.NEEDS_REVIEW, False, False, "engineer",
                                   "needs review by an engineer: mapping or adapter change"),
    Category.RATE_LIMIT: _P(_R.AUTO_RETRY, _T.RETRYING, False, True, "system",
                            "back off, honour Retry-After, retry automatically"),
    Category.TIMEOUT: _P(_R.SAFE_RETRY, _T.RETRYING, False, True, "system",
                         "safe retry with the same idempotency key / operation ID"),
    Category.DUPLICATE: _P(_R.NO_OP, _T.IGNORED, False, False, "system",
                           "no-op, recorded as evidence"),
    Category.STALE_DATA: _P(_R.NO_OP, _T.IGNORED, False, False, "system",
                            "ignored for state, recorded as evidence"),
    Category.MISSING_DEPENDENCY: _P(_R.WAIT_FOR_DEPENDENCY, _T.RETRYING, False, True, "system",
                                    "wait for the dependency, retry later"),
    Category.PROVIDER_OUTAGE: _P(_R.DELAYED_REPLAY, _T.RETRYING, True, True, "system",
                                 "back off, alert, delayed replay"),
    Category.MAPPING_FAILURE: _P(_R.NEEDS_REVIEW, _T.NEEDS_REVIEW, False, False, "engineer",
                                 "needs review by an engineer"),
    Category.BUSINESS_RULE_REJECTION: _P(_R.BLOCK_WORKFLOW, _T.NEEDS_REVIEW, False, False, "operator",
                                         "block downstream workflow, needs review"),
    Category.UNKNOWN: _P(_R.NEEDS_REVIEW, _T.NEEDS_REVIEW, False, False, "engineer",
                         "needs review; a recurring unknown should become a named category"),
}


def policy_for(category: Category) -> Policy:
    return POLICIES[category]


# Triage moves an operator (or the system) may make.
TRIAGE_TRANSITIONS: dict[TriageState, frozenset[TriageState]] = {
    _T.OPEN: frozenset({_T.RETRYING, _T.NEEDS_REVIEW, _T.RESOLVED, _T.IGNORED}),
    _T.RETRYING: frozenset({_T.OPEN, _T.NEEDS_REVIEW, _T.RESOLVED, _T.IGNORED}),
    _T.NEEDS_REVIEW: frozenset({_T.OPEN, _T.RETRYING, _T.RESOLVED, _T.IGNORED}),
    _T.RESOLVED: frozenset({_T.OPEN}),
    _T.IGNORED: frozenset({_T.OPEN}),
}


def can_triage(current: TriageState, target: TriageState) -> bool:
    return target in TRIAGE_TRANSITIONS[current]
