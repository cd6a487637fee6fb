"""Import TensorFlow without its C++ start-up lines, with oneDNN on: training and evaluation
import this first.

On a CPU machine TensorFlow prints oneDNN, CUDA and absl notices while it imports, and `E`
lines for the missing CUDA driver later; none asks anything of the user. Unless you set
TF_CPP_MIN_LOG_LEVEL yourself, it is set to 3 here, which silences the later ones. The lines
logged before absl is initialised ignore it (tensorflow/tensorflow#100442), so stderr is
captured while TensorFlow imports and replayed only if the import fails.
"""

import os
import sys
import tempfile


def import_tensorflow_quietly() -> None:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.buffer.write(captured.read())
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# oneDNN's kernels on every CPU, not only where TensorFlow turns them on by itself (AVX512_VNNI,
# AVX512_BF16 or AMX): one code path everywhere, and the faster one for cnn where measured
# (docs/performance.md#onednn-on-every-cpu).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import_tensorflow_quietly()
