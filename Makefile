# sofaas - thin wrapper over CMake.
#   make run    install missing packages, build, serve on 127.0.0.1:8080 (state in ./var)
#   make test   install missing packages, build, run the whole suite (ctest)
#   make deps   install missing Debian packages (no-op, no network, when all are present)
#   make package  build the Debian package build/sofaas_<version>_amd64.deb

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
LISTEN ?= 127.0.0.1:8080
STATE_DIR ?= ./var

# Everything a fresh Debian 12 needs to build, run and test sofaas.
DEB_PACKAGES = build-essential cmake pkg-config libuv1-dev node-llhttp \
	libcjson-dev libseccomp-dev libsqlite3-dev libcmocka-dev \
	python3 python3-pytest python3-requests curl sqlite3 \
	systemd man-db adduser dpkg-dev \
	python3-prometheus-client python3-yaml wrk

.PHONY: all deps build run test package clean

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

clean:
	rm -rf $(BUILD_DIR) build-asan
