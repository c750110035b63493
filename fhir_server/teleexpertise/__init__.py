"""Téléexpertise: the regional request workflow (ServiceRequest + per-addressee Task), one module per concern."""
