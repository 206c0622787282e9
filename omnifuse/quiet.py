"""TensorFlow's start-up lines, hidden from the command line unless ``--verbose``.

Three kinds of lines reach stderr when TensorFlow starts: "WARNING: All log messages before absl::InitializeLog()
is called are written to STDERR", "I0000 ... oneDNN custom operations are on ..." (each twice, once per shared
library) and, at run time on CPUs without AVX-512, "E0000 ... oneDNN supports DT_BOOL only on platforms with
AVX-512". The first two come from C++ while the library loads, before TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL``:
no environment variable hides them (tried: ``TF_CPP_MIN_LOG_LEVEL=3``, ``GLOG_minloglevel``, ``ABSL_*``). So the
import itself runs with file descriptor 2 pointed at a temporary file, and whatever was written there that is not
such a line (a Python warning, a real error) is written to stderr afterwards. ``TF_CPP_MIN_LOG_LEVEL=3``, set
before the import, hides the run-time ones. ``TF_ENABLE_ONEDNN_OPTS`` is left as it is: it changes numbers.

Only the command line calls :func:`setup`; ``import omnifuse`` changes nothing but the default log level.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager

from omnifuse.importhook import around_first_import

# a C++ log line (glog/absl format: I0000 00:00:1796543508.000560   15512 port.cc:153] ...), absl's notice that
# it logs to stderr before being set up, and the line cpu_feature_guard's message continues on
NOISE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|To enable the following instructions: .* rebuild TensorFlow)"
)


def setup(verbose: bool, user_level: str | None = None) -> None:
    """Hide TensorFlow's start-up lines (``verbose``, or ``OMNIFUSE_VERBOSE=1`` in the environment: show
    everything). ``user_level``: a ``TF_CPP_MIN_LOG_LEVEL`` the user set themselves, which wins. Both pass to the
    processes omnifuse starts (benchmark runs, workers) through the environment."""
    verbose = verbose or os.environ.get("OMNIFUSE_VERBOSE") == "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = user_level or ("0" if verbose else "3")
    if verbose:
        os.environ["OMNIFUSE_VERBOSE"] = "1"
        return
    for name in ("absl", "tensorflow"):  # their Python loggers' notices ("WARNING:absl:...")
        logging.getLogger(name).setLevel(logging.ERROR)
    around_first_import("quiet", ("tensorflow",), filtered_stderr)


@contextmanager
def filtered_stderr(noise: re.Pattern = NOISE):
    """Run the block with file descriptor 2 sent to a temporary file, then write its lines that are not
    ``noise`` to stderr (a crash inside the block still shows its traceback: the lines are written in any case)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (a test runner's capture): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not noise.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
