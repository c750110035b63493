"""Search parameters: registry, index extraction and MongoDB query building (see docs in each module)."""
