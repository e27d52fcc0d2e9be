"""Errors of the fleet services; messages say what was wrong and what to send instead."""


class FleetError(Exception):
    """Base class of fleet service errors."""


class NotFound(FleetError):
    """The named object does not exist (or is not visible to the caller)."""


class Conflict(FleetError):
    """The object already exists or the change contradicts the current state."""


class Invalid(FleetError):
    """The request is well-formed JSON but its content is not acceptable."""


class AuthFailed(FleetError):
    """Credentials or token are wrong, expired or revoked."""


class Forbidden(FleetError):
    """The caller may not do this (or an administrator switched it off)."""


class TooMany(FleetError):
    """The caller holds as many of these as a per-user limit allows (answered 429)."""
