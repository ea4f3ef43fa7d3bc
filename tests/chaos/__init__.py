"""The chaos (fault-injection) suite: see docs/reliability.md."""
