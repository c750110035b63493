#!/bin/sh
# System packages the tests and benchmarks talk to as real peers: DCMTK and dicom3tools (DICOM),
# Orthanc with its DICOMweb plugin (the PACS / DICOMweb peer), Chromium (the viewer check), and the
# DejaVu fonts of the compte-rendu PDF.
# Installs only what is missing; needs root (or sudo) and Debian's package repositories.
set -eu
missing=""
command -v storescu >/dev/null 2>&1 || missing="$missing dcmtk"
command -v dciodvfy >/dev/null 2>&1 || missing="$missing dicom3tools"
command -v Orthanc >/dev/null 2>&1 || missing="$missing orthanc"
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing="$missing orthanc-dicomweb"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# The compte-rendu PDF embeds DejaVu Sans (accents, every French character).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages:$missing"
# No service starts at install time: the tests start their own Orthanc on free ports.
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
$SUDO rm -f /usr/sbin/policy-rc.d
