"""fhir-server: a FHIR R4 server on MongoDB for French regional e-health."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
