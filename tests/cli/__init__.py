"""The command line: exit codes, one-line errors, signals and bad state."""
