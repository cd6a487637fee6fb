"""The one error type the stages raise, and the wrapper that reports it and Ctrl-C."""

import signal
import sys
from collections.abc import Callable
from types import FrameType

_interrupted = False


class StageError(Exception):
    """A failure with a one-line cause and a hint for the user."""

    def __init__(self, cause: str, hint: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.cause} (hint: {self.hint})" if self.hint else self.cause


def _on_ctrl_c(signum: int, frame: FrameType | None) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt again if a Ctrl-C came and library code swallowed it.

    Keras's model saving wraps a step in a bare `except:`, so a Ctrl-C that lands there while
    ModelCheckpoint saves is lost and training would go on.
    """
    if _interrupted:
        raise KeyboardInterrupt


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); report a StageError or Ctrl-C on one stderr line and exit non-zero.

    Ctrl-C is tracked only where Python handles it by default: a stage started with SIGINT
    ignored (a background job, nohup) keeps ignoring it.
    """
    previous_handler = signal.getsignal(signal.SIGINT)
    if previous_handler is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_ctrl_c)
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
    finally:
        signal.signal(signal.SIGINT, previous_handler)
