"""Puts tests/ on sys.path (pytest does for a rootless conftest), so ``import builders`` works."""
