"""Test support: real control-plane and worker processes, databases, waiting."""
