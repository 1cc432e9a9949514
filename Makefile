# lwcnn-mcu: `make demo` installs everything and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the firmware and tests need (installed with apt when missing).
APT_PACKAGES := gcc make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
# Offline datasets: ../shared/datasets when it is there (CI, air-gapped labs), else Keras downloads.
LWCNN_DATASETS ?= $(if $(wildcard ../shared/datasets/mnist.npz),$(abspath ../shared/datasets),)
export LWCNN_DATASETS
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system venv test lint demo clean

setup: system venv

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null \
	  || echo "warning: could not install$$missing (ARM/QEMU tests will be skipped)"; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check .

# -n auto: one pytest worker per core (pytest-xdist), --dist worksteal: an idle worker takes queued tests
# from a busy one (a few tests take minutes); the 20 slowest are listed; the summary line stays the last line
test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto --dist worksteal --durations=20

# The main job: the shipped MNIST model compiled to C, verified bit for bit against TFLite Micro on
# the test set, then built for the emulated Cortex-M4 board, booted, compared with the host, and
# benchmarked over its serial port.
demo: setup
	$(BIN)/lwcnn-mcu models
	$(BIN)/lwcnn-mcu compile mnist -o out/mnist_c
	$(BIN)/lwcnn-mcu verify mnist --dataset mnist --samples 10000
	$(BIN)/lwcnn-mcu build --board nucleo -o build/nucleo_f401re
	$(BIN)/lwcnn-mcu selftest --board qemu-m4
	$(BIN)/lwcnn-mcu bench --board qemu-m4 --samples 1000 --layers --cycles --plot out/bench-qemu-m4.png

clean:
	rm -rf out build .pytest_cache
