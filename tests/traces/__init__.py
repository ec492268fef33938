"""Tests of engine/traces/ and of the NodeJS OpenTelemetry layer (deploy/otel-layer/)."""
