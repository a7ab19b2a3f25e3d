"""User-facing errors: the CLI prints these as one line, without a traceback."""


class WorkbenchError(Exception):
    """An error caused by user input (a space file, a flag, a config). The message names the fix."""


class SpaceError(WorkbenchError):
    """A search space is ill-defined: raised when the space is built, naming the parameter."""


class ConfigError(WorkbenchError):
    """A sampled or hand-written config is invalid: names the field and the fix."""


class DataError(WorkbenchError):
    """A corpus, tokenizer or token file cannot be prepared."""


class StoreError(WorkbenchError):
    """The DuckDB store cannot be opened, migrated or queried."""


class StudyMismatchError(StoreError):
    """The store holds rows of a different optuna study under the name being written; nothing was written."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the trial is recorded as failed."""
