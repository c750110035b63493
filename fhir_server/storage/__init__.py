"""MongoDB storage: one collection per resource type for current versions, one `history` for all."""
