"""Tests of engine/language/."""
