# SARAi: `make demo` sets everything up and answers a bundled recording;
# `make test` sets everything up and runs the test suite.

VENV      ?= .venv
PY        := $(VENV)/bin/python
SARAI     := $(VENV)/bin/sarai
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Audio stack, speech for tests, PulseAudio test devices, a tray host for screenshots.
# The tray menu: GTK 3 and AppIndicator introspection data, plus the headers PyGObject is built
# against; a D-Bus session and xdotool for the tray tests; systemd-analyze and
# desktop-file-validate check the service files. Asterisk's prompts and music are recorded
# human speech (English, Spanish) and music for the VAD tests (tests/recordings.py). strace
# watches a whole turn for network lookups (tests/test_offline.py).
APT_PACKAGES := espeak-ng sox libsndfile1 libportaudio2 pulseaudio pulseaudio-utils \
                libasound2-plugins xvfb trayer imagemagick \
                asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-moh-opsound-wav \
                gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 libgirepository1.0-dev \
                libcairo2-dev pkg-config dbus-daemon xdotool systemd desktop-file-utils strace
# llama-cpp-python compiles from source once (10–20 min on 2 cores); pip caches the wheel.
# Portable CPU flags so a cached wheel never meets a CPU it was not built for.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup system venv models demo test lint clean

setup: system venv models

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "Installing SARAi and its dependencies (the first build of llama-cpp-python takes a while)…"
	@# The CPU build of torch (a local wheel on these machines); the omni extra would
	@# otherwise pull a multi-GB CUDA build from PyPI.
	$(PY) -m pip install --progress-bar off torch==2.13.0
	$(PY) -m pip install --progress-bar off -e '.[dev,omni]'
	touch $@

models: venv
	$(SARAI) setup

demo: setup
	$(SARAI) listen --input audio/data/hello.wav --output reply.wav
	@echo "Spoken answers: reply.wav"

test: setup
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check daemon audio routing models tests

clean:
	rm -rf $(VENV) .pytest_cache reply.wav
