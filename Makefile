# sofaas - thin wrapper over CMake.
#   make run    install missing packages, build, serve on 127.0.0.1:8080 (state in ./var)
#   make test   install missing packages, build, run the whole suite (ctest)
#   make deps   install missing Debian packages (no-op, no network, when all are present)
#   make package  build the Debian package build/sofaas_<version>_amd64.deb
#   make soak   bounded mixed load with faults against a real daemon (SOAK_SECONDS=60)
#   make fuzz   build the libFuzzer targets with clang and run each (SOFAAS_FUZZ_SECONDS=60)

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
LISTEN ?= 127.0.0.1:8080
STATE_DIR ?= ./var
SOAK_SECONDS ?= 60

# Everything a fresh Debian 12 needs to build, run and test sofaas.
DEB_PACKAGES = build-essential cmake pkg-config libuv1-dev node-llhttp \
	libcjson-dev libseccomp-dev libsqlite3-dev libcmocka-dev \
	python3 python3-pytest python3-requests curl sqlite3 \
	systemd man-db adduser dpkg-dev \
	python3-prometheus-client python3-yaml wrk clang libclang-rt-14-dev

.PHONY: all deps build run test package soak fuzz clean

all: build

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
			|| missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: deps build
	mkdir -p $(STATE_DIR)
	exec $(BUILD_DIR)/bin/sofaasd --listen $(LISTEN) --state-dir $(STATE_DIR)

test: deps build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j 1

package: deps build
	cd $(BUILD_DIR) && cpack -G DEB

# Not part of `make test`: minutes of load (a short soak runs in the suite).
soak: deps build
	/usr/bin/python3 tests/soak/soak.py --build-dir $(BUILD_DIR) --duration $(SOAK_SECONDS)

fuzz: deps
	tests/fuzz/run.sh

clean:
	rm -rf $(BUILD_DIR) build-asan build-fuzz
