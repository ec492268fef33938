"""Incremental updates between full scans: the EventBridge input (rules and objects), CloudTrail as a
fallback, and applying a delta of changed resources."""
