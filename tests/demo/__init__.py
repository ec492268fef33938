"""The demo estate and its flow logs (demo/)."""
