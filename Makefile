# dint-bench. `make reproduce` runs the evaluation, `make test` the tests;
# both run `make setup` first, which installs what they need (as root).
.PHONY: setup setup-simcluster build test reproduce plots clean distclean

PYTHON := .venv/bin/python
BUILD := build
# A schema other than the engine's default is built into a directory of its
# own: make BUILD=build/schema-X SCHEMA_CFLAGS='-DDINT_NTABLES=...' (the
# harness does this, see harness/schema.py).
SCHEMA_CFLAGS :=
# Includes go one way: engine/ (the protocol and the engine) includes only
# itself; userspace/ (the store and what the user-space servers share)
# includes engine/; baselines/ and bpf/ include both.
CFLAGS := -O2 -g -Wall -Wextra -Werror -Iengine -Iuserspace $(SCHEMA_CFLAGS)
ENGINE_HDRS := $(wildcard engine/*.h)
USERSPACE_HDRS := $(wildcard userspace/*.h)
DPDK_CFLAGS = $(shell pkg-config --cflags libdpdk)
DPDK_LIBS = $(shell pkg-config --libs libdpdk)

setup:
	@bash scripts/setup.sh

build: $(BUILD)/xdp_pass.o $(BUILD)/faults.o $(BUILD)/kernel_server $(BUILD)/bypass_server $(BUILD)/dint_slowpath \
	$(BUILD)/storebench.so

$(BUILD)/xdp_pass.o: bpf/xdp_pass.c
	@mkdir -p $(@D)
	clang -O2 -g -target bpf -I/usr/include/$(shell uname -m)-linux-gnu -c $< -o $@

# Fault injection on the testbed's client ends (harness/faults.py).
$(BUILD)/faults.o: bpf/faults.c
	@mkdir -p $(@D)
	clang -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu -c $< -o $@

$(BUILD)/kernel_server: baselines/kernel_server.c $(USERSPACE_HDRS) $(ENGINE_HDRS)
	@mkdir -p $(@D)
	gcc $(CFLAGS) -pthread -o $@ $<

# The store's cost per operation, loaded by harness/xdpbench.py (--systems store).
$(BUILD)/storebench.so: userspace/storebench.c $(USERSPACE_HDRS) $(ENGINE_HDRS)
	@mkdir -p $(@D)
	gcc $(CFLAGS) -shared -fPIC -o $@ $<

# dint's user-space slow path: the user-space store behind the in-kernel cache.
$(BUILD)/dint_slowpath: bpf/dint_slowpath.c bpf/dint_cache.h $(USERSPACE_HDRS) $(ENGINE_HDRS)
	@mkdir -p $(@D)
	gcc $(CFLAGS) -o $@ $<

$(BUILD)/bypass_server: baselines/bypass_server.c $(USERSPACE_HDRS) $(ENGINE_HDRS)
	@mkdir -p $(@D)
	gcc $(CFLAGS) $(DPDK_CFLAGS) -o $@ $< $(DPDK_LIBS)

# what a simulated cluster needs besides (sshd, sudo): the tests run one
setup-simcluster: setup
	@bash scripts/setup.sh --simcluster

test: setup-simcluster
	$(PYTHON) -m pytest

# make reproduce [PROFILE=local|paper|path.yml] [RUN_ID=id] [INVENTORY=file]
reproduce: setup
	$(PYTHON) -m harness reproduce $(if $(PROFILE),--profile $(PROFILE)) $(if $(RUN_ID),--run-id $(RUN_ID)) \
		$(if $(INVENTORY),--inventory $(INVENTORY))

plots: setup
	$(PYTHON) -m plots $(RUN)

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf .venv .setup-stamps
