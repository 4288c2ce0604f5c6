"""The payroll sandbox: a real HTTP server for the payroll provider's API, with a ledger of
every side effect and chaos knobs (`workbench sandbox payroll`)."""

from .chaos import Chaos
from .server import SandboxConfig, bind, serve

__all__ = ["Chaos", "SandboxConfig", "bind", "serve"]
