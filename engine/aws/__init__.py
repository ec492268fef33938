"""Talking to AWS: sessions and assumed roles, rate-limited and retried calls, the versioned log bucket."""
