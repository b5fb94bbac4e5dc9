# Thin wrapper over CMake.
#
#   make run        install what the daemon needs (once), build, start the daemon
#   make test       install what the tests need (once), then every test: the
#                   suite, the unit tests again under ASan + UBSan, and each
#                   fuzz target briefly
#   make install    the binary, man page and systemd user unit (PREFIX, DESTDIR)
#
# Dependencies are Debian packages (scripts/install-deps): `make deps` for the
# daemon, `make test-deps` for the tests. Both check with one dpkg-query and
# stay silent when everything is there. Build output is shown only when a
# step fails.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
PREFIX     ?= /usr/local
CLANG_FORMAT ?= clang-format-14

# The C sources clang-format owns (.clang-format): the tree, the tests, the
# fuzz targets. Generated files live in build directories and are not listed.
FORMAT_FILES = $(shell git ls-files 'src/*.[ch]' 'tests/*.[ch]' 'fuzz/*.[ch]' 2>/dev/null)

.PHONY: all deps test-deps deps-fuzz deps-format build run test test-asan test-fuzz \
	fuzz fuzz-build memcheck install format check-format clean

all: build

deps:
	@scripts/install-deps daemon

test-deps:
	@scripts/install-deps test

deps-fuzz:
	@scripts/install-deps fuzz

deps-format:
	@scripts/install-deps format

# $(call quiet,COMMAND,LOG): runs COMMAND with its output in LOG, and prints
# LOG only when COMMAND fails.
quiet = { mkdir -p $(dir $(2)) && { $(1) >$(2) 2>&1 || { cat $(2); exit 1; }; }; }

# $(call build-daemon,[--target T]): configures BUILD when it has no cache
# yet (an existing one, whatever its options, is kept: CMake reconfigures by
# itself when a CMakeLists.txt changes), then builds it, or only target T
# (checking every test target of an up-to-date tree takes seconds).
define build-daemon
	@[ -f $(BUILD)/CMakeCache.txt ] || $(call quiet,cmake -S . -B $(BUILD) \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRBEE_WERROR=ON,$(BUILD)/configure.log)
	@$(call quiet,cmake --build $(BUILD) -j $(JOBS) $(1),$(BUILD)/build.log)
endef

# The test build is configured every time, so that tests whose tools were
# installed since the last configure (cmocka, Python, node) are registered.
define build-tests
	@$(call quiet,cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DRBEE_WERROR=ON,$(BUILD)/configure.log)
	@$(call quiet,cmake --build $(BUILD) -j $(JOBS),$(BUILD)/build.log)
endef

define run-asan
	@$(call quiet,cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DRBEE_SANITIZE=ON \
		-DRBEE_WERROR=ON,$(BUILD_ASAN)/configure.log)
	@$(call quiet,cmake --build $(BUILD_ASAN) -j $(JOBS),$(BUILD_ASAN)/build.log)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS) -L unit
endef

# libFuzzer targets (docs/fuzzing.md): clang with ASan + UBSan, new inputs
# kept in $(BUILD_FUZZ)/fuzz-work, crashes in $(BUILD_FUZZ)/fuzz-artifacts.
define build-fuzz
	@$(call quiet,cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=$(FUZZ_CC) \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRBEE_FUZZ=ON -DRBEE_WERROR=ON,$(BUILD_FUZZ)/configure.log)
	@$(call quiet,cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz-targets,$(BUILD_FUZZ)/build.log)
endef

define run-fuzz-tests
	ctest --test-dir $(BUILD_FUZZ) --output-on-failure -j $(JOBS) -L fuzz
endef

build: deps
	$(call build-daemon)

# Prints nothing of its own before the daemon's first line; ARGS go to serve.
run: deps
	$(call build-daemon,--target rbee-hive)
	@exec ./$(BUILD)/rbee-hive serve $(ARGS)

test: test-deps
	$(build-tests)
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	$(run-asan)
	$(build-fuzz)
	$(run-fuzz-tests)

test-asan: test-deps
	$(run-asan)

# The integration suite against the ASan + UBSan build with LeakSanitizer on;
# fails on any sanitizer report (scripts/memcheck).
memcheck: test-deps
	JOBS=$(JOBS) scripts/memcheck $(BUILD_ASAN)

fuzz-build: deps-fuzz
	$(build-fuzz)

fuzz: fuzz-build
	fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

test-fuzz: fuzz-build
	$(run-fuzz-tests)

# DESTDIR is passed through the environment, where cmake --install reads it.
install: deps
	$(call build-daemon,--target rbee-hive)
	@cmake --install $(BUILD) --prefix $(PREFIX)

# Rewrites the listed sources in place; check-format only lists the files
# that differ from what clang-format would write, and fails when there are any.
format: deps-format
	@$(CLANG_FORMAT) -i $(FORMAT_FILES)

check-format: deps-format
	@bad=$$($(CLANG_FORMAT) --dry-run $(FORMAT_FILES) 2>&1 | \
		sed -n 's/^\([^ :]*\):[0-9]*:[0-9]*: \(warning\|error\): .*/\1/p' | sort -u); \
	if [ -n "$$bad" ]; then \
		echo "not formatted as .clang-format says (make format fixes them):"; \
		for f in $$bad; do echo "  $$f"; done; exit 1; \
	fi

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)

# Benchmarks against nginx on loopback (bench/README.md): an optimised build
# of its own, then the transfer and daemon figures as Markdown tables.
BUILD_BENCH ?= build-bench
.PHONY: bench
bench: deps
	@bench/install-deps
	@cmake -S . -B $(BUILD_BENCH) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRBEE_WERROR=ON >/dev/null
	@cmake --build $(BUILD_BENCH) -j $(JOBS)
	bench/xfer.sh --build $(BUILD_BENCH) $(ARGS)
	bench/daemon.sh --build $(BUILD_BENCH)
