"""Layer types: one module per family, each a plugin registering its LayerTypes."""
