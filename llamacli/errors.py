"""The one exception type the CLI turns into a single line on stderr and a non-zero exit."""


class LlamacliError(Exception):
    """A problem with the user's input (file, flag, prompt) that deserves one clear line."""

    exit_code = 1
