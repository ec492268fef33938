"""VPC flow logs: reading flow-log records and turning them into connection relations."""
