# The server image used by docker-compose.yml (production runs against MongoDB, not FerretDB).
FROM python:3.11-slim
# DejaVu Sans: the font the compte-rendu PDF embeds (fhir_server/teleexpertise/report_pdf.py).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_server ./fhir_server
COPY profiles ./profiles
COPY mappings ./mappings
COPY dicomweb ./dicomweb
RUN pip install --no-cache-dir -e . && useradd --system --home /var/lib/fhir fhir \
    && mkdir -p /var/lib/fhir && chown fhir /var/lib/fhir
USER fhir
ENV FHIR_HOST=0.0.0.0 FHIR_PORT=8080 FHIR_DATA_DIR=/var/lib/fhir
EXPOSE 8080
CMD ["fhir-server", "serve"]
