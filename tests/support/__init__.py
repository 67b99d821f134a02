"""Helpers shared by the tests: tiny models, deploy bundles, media files."""
