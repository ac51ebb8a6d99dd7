"""The one exception type that means "the user asked for something that cannot run"."""


class ConfigError(ValueError):
    """A bad setting or input file, reported as one readable line naming the problem and the fix."""
