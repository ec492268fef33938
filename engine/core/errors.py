"""Typed errors: a message template plus the structured fields it was built from; the exit codes.

The fields stay on the instance so callers (status, summaries) can group failures, e.g. every
`AccessDenied` into "role X needs Y". No secret is ever put into a field.
"""

from __future__ import annotations

# complete; ran but incomplete; bad input (config, mappings, credentials); the state is locked by another run
EXIT_OK, EXIT_INCOMPLETE, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3


class TopologyError(Exception):
    """Base class; `fmt` is formatted with the keyword fields given to the constructor."""

    fmt = "{problem}"

    def __init__(self, **fields: object) -> None:
        self.fields = fields
        super().__init__(self.fmt.format(**fields))

    def __getattr__(self, name: str) -> object:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None


class BadInput(TopologyError):
    """Input the user must fix (config, mappings, credentials): exit code 2."""


class ConfigError(BadInput):
    fmt = "{file}: {key}: {problem}"


class MappingError(BadInput):
    fmt = "{file}: {key}: {problem}"


class CredentialsError(BadInput):
    fmt = "cannot get credentials for {role_arn}: {problem}"


class StateError(BadInput):
    """The state file cannot be used (corrupt, read-only, a directory, a parent that is a file)."""

    fmt = "state {path}: {problem}"


class Locked(TopologyError):
    """Another run holds the state's lock."""

    fmt = "state {path} is in use by another run ({holder}); try again when it has finished"


class Interrupted(TopologyError):
    """The run was asked to stop (SIGINT, SIGTERM)."""

    fmt = "interrupted before {operation}"


class CallFailed(TopologyError):
    """An AWS call failed after retries; makes its unit incomplete."""

    fmt = "{operation} in {account}/{region} failed: {code}: {problem}"


class AccessDenied(CallFailed):
    fmt = "role {role_arn} needs {action} ({account}/{region}: {code})"


class CredentialsRejected(CallFailed):
    """AWS refused the credentials themselves (expired, bad signature, unknown key): not a permission gap."""

    fmt = "{operation} in {account}/{region}: AWS rejected the credentials ({code}); check clock and role"


class Unreachable(TopologyError):
    """AWS could not be reached, or answered something that is not AWS: an outage, not bad input."""

    fmt = "cannot reach AWS for {role_arn}: {problem}"


class Throttled(CallFailed):
    fmt = "{operation} throttled in {account}/{region} after retries ({code})"


class DeliveryError(TopologyError):
    fmt = "delivery to {target} failed: {problem}"


class MappingErrors(BadInput):
    """Every problem found in the mapping files, one `file: key: problem` per line."""

    fmt = "{details}"
