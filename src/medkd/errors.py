"""The one base of medkd's errors: a problem the user can fix, whose message says what was wrong, where, and
what to do. The command line turns any of them into its message and exit code 2, without a traceback."""


class MedkdError(Exception):
    """Base of ConfigError, DataError, ModelError, DistillationError, ExportError, ReportError."""
