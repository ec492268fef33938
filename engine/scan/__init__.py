"""The full scan: the call plan, collecting each unit, scanning accounts, progress, and the last snapshot."""
