"""Background jobs (Bulk Data export, later imports and reindexing), coordinated through the database."""
