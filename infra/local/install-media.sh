#!/usr/bin/env bash
# Installs what the local RTSP server needs (Debian bookworm packages), idempotently.
#
#   python3-gi + gir1.2-gst-rtsp-server-1.0   gst-rtsp-server bindings for /usr/bin/python3
#   gstreamer1.0-plugins-base                 core elements (typefind, queue, app/tcp sinks)
#   gstreamer1.0-plugins-good                 qtdemux (MP4) and rtph264pay / rtpbin
#   gstreamer1.0-plugins-bad                  h264parse (videoparsersbad)
#   gstreamer1.0-rtsp                         RTSP protocol plugins
#
# The served file is H.264 transcoded once in the venv (PyAV's libx264, see infra/local/media.py),
# so no decoder or encoder (gstreamer1.0-libav, x264enc from plugins-ugly) is needed here.
# Also installs nothing to fetch vtest.avi: that uses `apt-get download` + `dpkg-deb` only.
set -euo pipefail

PACKAGES=(
  python3-gi
  gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-rtsp
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-media: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

echo "install-media: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the index only when it is missing (a fresh container); otherwise reuse it.
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
  $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

# Fail here, not at server start, if the bindings cannot load.
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
  || { echo "install-media: gst-rtsp-server bindings do not import" >&2; exit 1; }
echo "install-media: done"
