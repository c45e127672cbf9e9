# hpcc build, test and demo entry points. Everything builds for one target in
# the release profile, so unit tests, conformance tests and the shipped binary
# share one set of compiled dependencies (the build machines have 2 cores).

CARGO   ?= cargo
PREFIX  ?= /usr/local
# musl gives a static-pie binary; without the musl target we fall back to the
# gnu target with a statically linked C runtime.
TARGET  ?= $(shell rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 && echo x86_64-unknown-linux-musl || echo x86_64-unknown-linux-gnu)
ifeq ($(TARGET),x86_64-unknown-linux-gnu)
export RUSTFLAGS += -C target-feature=+crt-static
endif
CARGO_FLAGS := --release --target $(TARGET)
BIN     := target/$(TARGET)/release/hpcc
# The unprivileged account `make test` uses for the rootless half when run as root.
TEST_USER ?= hpcctest
# The MPI test image (Debian 12 minbase + Open MPI + pingpong), built once by
# root with debootstrap; the MPI tests skip (or fail under CI) without it.
MPI_IMAGE := $(abspath target/hpcc-mpi/mpi.tar)
MPICH_IMAGE := $(abspath target/hpcc-mpi/mpich.tar)
export HPCC_MPI_IMAGE ?= $(MPI_IMAGE)
export HPCC_MPICH_IMAGE ?= $(MPICH_IMAGE)

.PHONY: all build install demo demo-deps test test-deps unit runtime-tests runtime-tests-rootless integration lint clean mpi-image bench fuzz FORCE

all: build

build: $(BIN)

$(BIN): FORCE
	$(CARGO) build $(CARGO_FLAGS) -p hpcc
	@file -L $(BIN) | grep -Eq 'statically linked|static-pie' || { echo "error: $(BIN) is not static"; file -L $(BIN); exit 1; }

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/hpcc

# The Debian packages come first: `file` and gcc are needed to build.
demo: demo-deps build
	@sh integration/demo.sh $(abspath $(BIN))

demo-deps:
	@sh integration/deps.sh demo

# Every suite ends with "N passed, N failed, N skipped"; the lines are
# collected in SUMMARY and repeated at the end. Under make test every
# client and tool is required: a missing one fails, never skips.
SUMMARY := $(abspath target/test-summary.txt)
test: export HPCC_REQUIRE_CLIENTS = 1
test: export HPCC_SUMMARY_FILE = $(SUMMARY)
test: test-deps lint unit mpi-image runtime-tests runtime-tests-rootless integration
	@echo "make test: every suite passed:"; sed 's/^/  /' $(SUMMARY)

test-deps:
	@sh integration/deps.sh test
	@mkdir -p $(dir $(SUMMARY)) && : >$(SUMMARY)

# Needs root (debootstrap); as a user it is skipped and the MPI tests say so.
mpi-image:
	@if [ "$$(id -u)" = 0 ]; then mkdir -p $(dir $(MPI_IMAGE)) && \
		sh integration/mpi/build-image.sh $(MPI_IMAGE) openmpi && \
		sh integration/mpi/build-image.sh $(MPICH_IMAGE) mpich; \
	else echo "mpi-image: not root, not building $(MPI_IMAGE) and $(MPICH_IMAGE)"; fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --all-targets -- -D warnings

unit:
	@sh integration/suite.sh "unit tests" $(CARGO) test $(CARGO_FLAGS) -p hpcc

# Conformance tests as the invoking user (root in CI).
runtime-tests: build
	@HPCC_BIN=$(abspath $(BIN)) sh integration/suite.sh "runtime-tests as $$(id -un)" \
		$(CARGO) test $(CARGO_FLAGS) -p runtime-tests -- --test-threads=2

# The same conformance tests as an unprivileged user: rootless is the main case.
runtime-tests-rootless: build
	@sh integration/run-rootless.sh $(TEST_USER) $(abspath $(BIN)) "$(CARGO) test $(CARGO_FLAGS) -p runtime-tests"

# Real clients against the built binary: containerd (ctr), Docker, podman
# and a one-node Slurm cluster, as root and (podman, Slurm) as TEST_USER.
integration: build mpi-image
	TEST_USER=$(TEST_USER) bash integration/clients/run.sh $(abspath $(BIN))

# Side-by-side performance against the peers; never part of make test.
bench: build mpi-image
	bash integration/bench/bench.sh $(abspath $(BIN)) $(MPI_IMAGE)

# cargo-fuzz targets (fuzz/, its own workspace, built with nightly and
# ASan into fuzz/target), FUZZ_SECONDS each, one after the other; fails on
# the first crash, leaving the input in fuzz/artifacts/TARGET/. New inputs
# go to fuzz/target/work/TARGET, so the committed corpus stays as it is.
# Needs `cargo install cargo-fuzz`; never part of make test.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := spec_config image_manifest layer_apply seccomp signals_idmap
fuzz:
	@set -e; cd fuzz; for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; mkdir -p target/work/$$t; \
		cargo +nightly fuzz run $$t target/work/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -max_len=16384 -print_final_stats=1 \
			|| { echo "fuzz: $$t failed (crash input in fuzz/artifacts/$$t/)"; exit 1; }; \
	done; echo "fuzz: no target crashed"

clean:
	$(CARGO) clean
