"""The one exception type for user mistakes: bad input files, bad config, missing data.

The CLI prints these without a traceback and exits with code 2; everything else is a bug and keeps its traceback.
"""


class OmnifuseError(ValueError):
    """A problem with what the user gave omnifuse (a file, a config key, a data set), not a bug."""
