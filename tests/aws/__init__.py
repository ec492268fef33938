"""Tests of engine/aws/."""
