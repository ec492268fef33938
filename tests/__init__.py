"""The test suite: one sub-package per engine layer (core, spec, aws, delivery, scan, events, flowlogs,
deploy, view), the live mapping tests (mappings), the command line (cli) and the demo (demo)."""
