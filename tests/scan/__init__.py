"""Tests of engine/scan/."""
