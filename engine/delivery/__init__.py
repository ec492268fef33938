"""Getting payloads out: building and validating receiver payloads, and the sinks that deliver them
(files, HTTP, the spool that keeps what the receiver did not take)."""
