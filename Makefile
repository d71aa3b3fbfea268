# Convenience wrapper around CMake: `make`, `make install PREFIX=/opt/kata`, `make test`.
PREFIX ?= /opt/kata
BUILD ?= build
JOBS ?= 2

.PHONY: all build install test clean
all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j$(JOBS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

test:
	bash utils/test.sh

clean:
	rm -rf $(BUILD)
