"""Errors a use case reports to its caller: one line, meant for the operator."""


class ServiceError(Exception):
    """Bad input or an impossible request; nothing was written."""


class NotFound(ServiceError):
    pass


class InvalidArgument(ServiceError):
    """An argument outside what the use case accepts (a filter value, a name): a usage error."""


class StoreUnavailable(ServiceError):
    """The store cannot be opened, or failed under a use case (locked, damaged, disk full...)."""


class ReadOnlyStore(StoreUnavailable):
    """A write reached a store this process may only read."""
