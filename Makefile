# dint-bench. `make reproduce` runs the evaluation, `make test` the tests;
# both run `make setup` first, which installs what they need (as root).
.PHONY: setup build test reproduce plots clean distclean

PYTHON := .venv/bin/python
BUILD := build
# A schema other than the engine's default is built into a directory of its
# own: make BUILD=build/schema-X SCHEMA_CFLAGS='-DDINT_NTABLES=...' (the
# harness does this, see harness/schema.py).
SCHEMA_CFLAGS :=
CFLAGS := -O2 -g -Wall -Wextra -Werror -Ibpf $(SCHEMA_CFLAGS)
BPF_HDRS := $(wildcard bpf/*.h)
DPDK_CFLAGS = $(shell pkg-config --cflags libdpdk)
DPDK_LIBS = $(shell pkg-config --libs libdpdk)

setup:
	@bash scripts/setup.sh

build: $(BUILD)/xdp_pass.o $(BUILD)/kernel_server $(BUILD)/bypass_server $(BUILD)/dint_slowpath

$(BUILD)/xdp_pass.o: bpf/xdp_pass.c
	@mkdir -p $(@D)
	clang -O2 -g -target bpf -I/usr/include/$(shell uname -m)-linux-gnu -c $< -o $@

$(BUILD)/kernel_server: baselines/kernel_server.c baselines/server_common.h baselines/store.h $(BPF_HDRS)
	@mkdir -p $(@D)
	gcc $(CFLAGS) -pthread -o $@ $<

# dint's user-space slow path: the baselines' store behind the in-kernel cache.
$(BUILD)/dint_slowpath: bpf/dint_slowpath.c baselines/server_common.h baselines/store.h $(BPF_HDRS)
	@mkdir -p $(@D)
	gcc $(CFLAGS) -Ibaselines -o $@ $<

$(BUILD)/bypass_server: baselines/bypass_server.c baselines/server_common.h baselines/store.h $(BPF_HDRS)
	@mkdir -p $(@D)
	gcc $(CFLAGS) $(DPDK_CFLAGS) -o $@ $< $(DPDK_LIBS)

test: setup
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
