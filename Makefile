# Two commands: `make run` and `make test`. Both set up whatever is missing first.
PYTHON ?= python3
export PATH := /usr/local/go/bin:$(PATH)
VENV := .venv
BIN := .bin
FERRETDB := $(BIN)/ferretdb-embedded
STAMP := $(VENV)/.installed
SYSTEM := $(BIN)/.system-packages

.PHONY: run test setup lint bench clean

run: setup
	$(VENV)/bin/fhir-server serve

test: setup
	$(VENV)/bin/pytest -q

setup: $(STAMP) $(FERRETDB) $(SYSTEM)

# DCMTK, dicom3tools, Orthanc (+ DICOMweb plugin) and Chromium: the real peers of the imaging tests.
$(SYSTEM): tools/setup-system.sh
	./tools/setup-system.sh
	mkdir -p $(BIN) && touch $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Our own small main around FerretDB's embeddable package (see tools/ferretdb/main.go):
# no debug port, no telemetry, no release-time version file.
$(FERRETDB): tools/ferretdb/main.go tools/ferretdb/go.mod tools/ferretdb/go.sum
	@command -v go >/dev/null || { echo "Go toolchain not found (needed to build FerretDB)"; exit 1; }
	cd tools/ferretdb && CGO_ENABLED=0 go build -trimpath -o ../../$(FERRETDB) .

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(VENV)/bin/python bench/crud.py

clean:
	rm -rf $(VENV) $(BIN) var
