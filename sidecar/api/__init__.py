"""HTTP: thin blueprints over the runtime. Validation at the edge, the domain underneath."""
