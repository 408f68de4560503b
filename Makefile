# A thin layer over CMake so that a new user needs two commands:
#   make run    install what is missing, build, start the server with defaults
#   make test   install what is missing, build, run the whole test suite
# Everything here is idempotent.

BUILD      ?= build
ASAN_BUILD ?= build-asan
ARGS       ?=
CTEST_ARGS ?= --output-on-failure -j2

C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all deps build run test test-asan format check-format clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@ninja -C $(BUILD)
	@ln -sf $(BUILD)/compile_commands.json compile_commands.json

run: build
	./$(BUILD)/tabib $(ARGS)

test: build
	ctest --test-dir $(BUILD) $(CTEST_ARGS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its
# own build directory. Any report (including a leak at exit) fails the run.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTABIB_SANITIZE=ON >/dev/null
	@ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir $(ASAN_BUILD) $(CTEST_ARGS)

format:
	clang-format -i $(C_SOURCES)

check-format:
	@clang-format --dry-run -Werror $(C_SOURCES) && echo "check-format: all C files formatted"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) compile_commands.json
