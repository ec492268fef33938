"""The bottom layer: errors, the config, the state file, the scheduler, where shipped files are, proxies.

Nothing here imports another engine package."""
