"""Kafka clients behind one small async interface; see ``base.py``."""
