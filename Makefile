# hpcc build, test and demo entry points. Everything builds for one target in
# the release profile, so unit tests, conformance tests and the shipped binary
# share one set of compiled dependencies (the build machines have 2 cores).

CARGO   ?= cargo
PREFIX  ?= /usr/local
# musl gives a static binary (not PIE: .cargo/config.toml says why); without
# the musl target we fall back to the gnu target with a statically linked C
# runtime.
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

.PHONY: all build install demo demo-deps test test-deps unit runtime-tests runtime-tests-rootless runtime-tests-underlay runtime-tests-enosys integration guest-images guests conformance guest-conformance lint clean mpi-image bench fuzz FORCE

all: build

build: $(BIN)

$(BIN): FORCE
	$(CARGO) build $(CARGO_FLAGS) -p hpcc
	@file -L $(BIN) | grep -Eq 'statically linked|static-pie' || { echo "error: $(BIN) is not static"; file -L $(BIN); exit 1; }

# Where AppArmor restricts unprivileged user namespaces (Ubuntu 24.04),
# hpcc needs its profile (integration/apparmor/hpcc); it is installed
# where /etc/apparmor.d exists, then to be loaded with apparmor_parser.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/hpcc
	@if [ -d $(DESTDIR)/etc/apparmor.d ]; then \
		sed 's#@HPCC@#$(PREFIX)/bin/hpcc#' integration/apparmor/hpcc >$(DESTDIR)/etc/apparmor.d/hpcc && \
		echo "installed /etc/apparmor.d/hpcc; load it with: apparmor_parser -r /etc/apparmor.d/hpcc"; fi

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
test: test-deps lint unit mpi-image runtime-tests runtime-tests-rootless runtime-tests-underlay runtime-tests-enosys integration guests
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

# Image mode again with its root built as an underlay (what kernels before
# 5.11 get, where an unprivileged user may not mount overlayfs), as the
# invoking user and as TEST_USER.
UNDERLAY_TESTS := --test image_run --test hpc --test mpi
runtime-tests-underlay: build
	@HPCC_IMAGE_ROOT=underlay HPCC_BIN=$(abspath $(BIN)) sh integration/suite.sh "runtime-tests over an underlay as $$(id -un)" \
		$(CARGO) test $(CARGO_FLAGS) -p runtime-tests $(UNDERLAY_TESTS) -- --test-threads=2
	@if [ "$$(id -u)" = 0 ]; then HPCC_IMAGE_ROOT=underlay sh integration/run-rootless.sh $(TEST_USER) $(abspath $(BIN)) \
		"$(CARGO) test $(CARGO_FLAGS) -p runtime-tests $(UNDERLAY_TESTS)" "runtime-tests over an underlay"; fi

# The suites that check containment (hostile images, CVEs, image mode) and
# the kernel fallbacks, again as on a kernel without openat2 (5.6),
# mount_setattr (5.12), close_range (5.9) and fsopen (5.2: the overlay seal
# of CVE-2019-5736 falls back to the memfd copy): the test process makes them
# fail with ENOSYS for itself and everything it starts. Root only (a user
# would need no_new_privs, which breaks setuid helpers).
ENOSYS_CALLS := openat2,mount_setattr,close_range,fsopen
runtime-tests-enosys: build
	@if [ "$$(id -u)" = 0 ]; then \
		HPCC_TEST_ENOSYS=$(ENOSYS_CALLS) HPCC_BIN=$(abspath $(BIN)) sh integration/suite.sh \
			"runtime-tests with $(ENOSYS_CALLS) failing" $(CARGO) test $(CARGO_FLAGS) -p runtime-tests \
			--test hostile_images --test hardening --test image_run --test kernel_fallbacks -- --test-threads=2; \
	else echo "runtime-tests with $(ENOSYS_CALLS) failing: 0 passed, 0 failed, 1 skipped (needs root)" | tee -a $(SUMMARY); fi

# VM guests with other kernels (Debian 12: 6.1, Debian 11: 5.10; systemd,
# cgroup v2), built once with debootstrap (as root) and cached in
# target/guests, booted under qemu with the guest suite.
GUESTS := $(abspath target/guests)
GUEST_BUSYBOX := $(GUESTS)/busybox.tar
guest-images:
	@if [ "$$(id -u)" = 0 ]; then \
		sh integration/guests/build-guest.sh bookworm $(GUESTS)/bookworm && \
		sh integration/guests/build-guest.sh bullseye $(GUESTS)/bullseye; \
	else echo "guest-images: not root, using what $(GUESTS) holds"; fi

guests: build mpi-image guest-images
	@mkdir -p $(GUESTS) && sh integration/clients/mkimage.sh $(GUEST_BUSYBOX) hpcc-busybox:latest
	@for g in "bookworm:guest Debian 12 (kernel 6.1)" "bullseye:guest Debian 11 (kernel 5.10)"; do \
		sh integration/guests/run-guest.sh $(GUESTS)/$${g%%:*} "$${g#*:}" integration/guests/suite.sh \
			hpcc=$(abspath $(BIN)) busybox.tar=$(GUEST_BUSYBOX) mpi.tar=$(MPI_IMAGE) || exit 1; \
	done

# The OCI runtime-tools validation suite, built outside this repository
# (RUNTIME_TOOLS names a folder with validation/, runtimetest and
# rootfs-amd64.tar.gz; runtime-tests/CONFORMANCE.md says how), against
# hpcc on this host, and in the Debian 12 guest (cgroup v2) beside its
# runc and crun. As root; never part of make test.
RUNTIME_TOOLS ?=
conformance: build
	@test -n "$(RUNTIME_TOOLS)" || { echo "conformance: set RUNTIME_TOOLS=DIR (see runtime-tests/CONFORMANCE.md)"; exit 2; }
	bash integration/conformance/validation.sh $(RUNTIME_TOOLS) $(abspath $(BIN))

guest-conformance: build guest-images
	@test -n "$(RUNTIME_TOOLS)" || { echo "guest-conformance: set RUNTIME_TOOLS=DIR (see runtime-tests/CONFORMANCE.md)"; exit 2; }
	GUEST_TIMEOUT=5400 sh integration/guests/run-guest.sh $(GUESTS)/bookworm "guest Debian 12 (kernel 6.1)" \
		integration/guests/conformance.sh hpcc=$(abspath $(BIN)) validation.sh=integration/conformance/validation.sh \
		runtime-tools=$(RUNTIME_TOOLS)

# Real clients against the built binary: containerd (ctr), Docker, podman,
# a one-node Slurm cluster and a simulated three-node Slurm + Open MPI
# cluster, as root and (podman, Slurm, multi-node) as TEST_USER.
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
