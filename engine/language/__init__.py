"""The mapping language: loading and checking mappings/*.yaml, the JMESPath dialect, and turning one
collected item into component and relation records (pure functions, no AWS calls)."""
