"""Tests of engine/events/."""
