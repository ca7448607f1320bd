"""Redis-backed stores. Redis errors are translated to ``sidecar.errors`` here, never above."""
