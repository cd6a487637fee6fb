"""The one error type the stages raise, and the wrapper that reports it."""

import sys
from collections.abc import Callable


class StageError(Exception):
    """A failure with a one-line cause and a hint for the user."""

    def __init__(self, cause: str, hint: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.cause} (hint: {self.hint})" if self.hint else self.cause


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); report a StageError or Ctrl-C on one stderr line and exit non-zero."""
    try:
        main()
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(
            "interrupted: the stage did not finish (hint: `dvc repro` reruns it)", file=sys.stderr
        )
        sys.exit(130)
