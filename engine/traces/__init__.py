"""OpenTelemetry traces: OTLP ingest (decode, the receiver) and the call records it appends to the state."""
