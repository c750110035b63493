"""Mappings from other health-data formats (HL7 v2, ...) to FHIR R4 resources."""
