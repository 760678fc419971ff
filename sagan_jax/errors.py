"""Errors that mean "change the input": the entry points report them as one line (`sagan_jax.cli`)."""


class ConfigError(ValueError):
  """A config field holds a value the run cannot use; the message names the field and the fix."""
