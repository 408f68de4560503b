# A thin layer over CMake so that a new user needs two commands:
#   make run    install what is missing, build, start the server with defaults
#   make test   install what is missing, build, run the whole test suite
# Everything here is idempotent.

BUILD      ?= build
ASAN_BUILD ?= build-asan
ARGS       ?=
CTEST_ARGS ?= --output-on-failure -j2

C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all deps build node-deps run test test-asan fuzz format check-format clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@ninja -C $(BUILD)
	@ln -sf $(BUILD)/compile_commands.json compile_commands.json

# The protocol and browser tests' npm packages, installed exactly as each
# package-lock.json says, again only when that lock file changes. The browser
# tests' playwright-core drives Debian's /usr/bin/chromium and downloads nothing.
NODE_STAMP = tests/protocol/node_modules/.package-lock.json
BROWSER_NODE_STAMP = tests/browser/node_modules/.package-lock.json
node-deps: $(NODE_STAMP) $(BROWSER_NODE_STAMP)
$(NODE_STAMP): tests/protocol/package-lock.json | deps
	cd tests/protocol && npm ci --no-audit --no-fund
	@touch $@
$(BROWSER_NODE_STAMP): tests/browser/package-lock.json | deps
	cd tests/browser && npm ci --no-audit --no-fund
	@touch $@

run: build
	./$(BUILD)/tabib $(ARGS)

test: build node-deps
	ctest --test-dir $(BUILD) $(CTEST_ARGS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its
# own build directory. Any report (including a leak at exit) fails the run.
test-asan: deps node-deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTABIB_SANITIZE=ON >/dev/null
	@ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir $(ASAN_BUILD) $(CTEST_ARGS)

# Each fuzzer for FUZZ_SECONDS under libFuzzer (clang), starting from its corpus.
FUZZ_SECONDS ?= 30
FUZZERS = hub http_path config_file stun sdp rtp rtcp audit_query
fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -G Ninja -DTABIB_FUZZ=ON >/dev/null
	@ninja -C build-fuzz $(addprefix fuzz_,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  work=$$(mktemp -d); cp tests/fuzz/corpus/$$f/* $$work/; \
	  echo "fuzz_$$f: $(FUZZ_SECONDS) s"; \
	  ./build-fuzz/tests/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=16384 \
	    -artifact_prefix=build-fuzz/ $$work > build-fuzz/fuzz_$$f.log 2>&1; rc=$$?; \
	  tail -n 2 build-fuzz/fuzz_$$f.log; rm -rf $$work; \
	  [ $$rc -eq 0 ] || { echo "fuzz_$$f failed: see build-fuzz/fuzz_$$f.log"; exit 1; }; \
	done

format:
	clang-format -i $(C_SOURCES)

check-format:
	@clang-format --dry-run -Werror $(C_SOURCES) && echo "check-format: all C files formatted"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz compile_commands.json
