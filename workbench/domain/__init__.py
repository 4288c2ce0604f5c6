"""The pure heart of the workbench: statuses, the state machine, the failure taxonomy and the
canonical shapes adapters map into. Nothing here performs I/O or imports anything of ours
outside this package."""
