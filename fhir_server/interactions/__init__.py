"""One module per FHIR RESTful interaction (read.py, create.py, update.py, ...)."""
