# Thin wrapper over CMake. `make run` starts the daemon, `make test` runs
# every test (then the unit tests again under ASan + UBSan, then each fuzz
# target briefly). `make fuzz` runs each fuzz target for FUZZ_SECONDS.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60

.PHONY: all deps deps-fuzz build run test test-asan test-fuzz fuzz fuzz-build memcheck clean

all: build

deps:
	@scripts/install-deps

deps-fuzz:
	@scripts/install-deps fuzz

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRBEE_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/rbee-hive serve $(ARGS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-fuzz

test-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DRBEE_SANITIZE=ON -DRBEE_WERROR=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS) -L unit

# The integration suite against the ASan + UBSan build with LeakSanitizer on;
# fails on any sanitizer report (scripts/memcheck).
memcheck: deps
	JOBS=$(JOBS) scripts/memcheck $(BUILD_ASAN)

# libFuzzer targets (docs/fuzzing.md): clang with ASan + UBSan, new inputs
# kept in $(BUILD_FUZZ)/fuzz-work, crashes in $(BUILD_FUZZ)/fuzz-artifacts.
fuzz-build: deps-fuzz
	@cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DRBEE_FUZZ=ON -DRBEE_WERROR=ON >/dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz-targets

fuzz: fuzz-build
	fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

test-fuzz: fuzz-build
	ctest --test-dir $(BUILD_FUZZ) --output-on-failure -j $(JOBS) -L fuzz

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
