"""Errors a use case reports to its caller: one line, meant for the operator."""


class ServiceError(Exception):
    """Bad input or an impossible request; nothing was written."""


class NotFound(ServiceError):
    pass
