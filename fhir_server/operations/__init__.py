"""One module per FHIR operation ($everything, later $export, $validate...)."""
