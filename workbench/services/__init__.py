"""Use cases: the one place the CLI, the TUI and the engine call. Each runs in a unit of work
(one transaction) over the store."""
