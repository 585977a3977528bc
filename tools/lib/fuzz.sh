# shellcheck shell=bash
# What tools/test's fuzz step and tools/fuzz share: the libFuzzer build, the
# targets it made, one target's run, and the report of one that failed.
# Sourced after tools/lib/setup.sh, from the project's root.

# build-fuzz/: clang, libFuzzer, ASan+UBSan.
sb_fuzz_build() {
	CC=clang sb_build build-fuzz -Dfuzz=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false
}

# The targets, one name per line: test/fuzz/fuzz_<name>.c.
sb_fuzz_names() {
	local src
	for src in test/fuzz/fuzz_*.c; do
		[ -e "$src" ] || continue
		src=${src#test/fuzz/fuzz_}
		printf '%s\n' "${src%.c}"
	done
}

# sb_fuzz_binary NAME: its binary's path, when this build makes it (a binary
# left over from an older build, or a target missing from
# test/fuzz/meson.build, does not count); else fails.
sb_fuzz_binary() {
	local bin=build-fuzz/test/fuzz/fuzz_$1
	# (grep to /dev/null, not -q: under pipefail ninja would die of SIGPIPE)
	[ -x "$bin" ] && ninja -C build-fuzz -t targets all 2>/dev/null | grep "^test/fuzz/fuzz_$1: " >/dev/null &&
		printf '%s\n' "$bin"
}

# sb_fuzz_run NAME SECONDS SCRATCH LOG [LIBFUZZER-ARG...]: NAME fuzzed for
# SECONDS over SCRATCH (where new inputs go: libFuzzer writes to the first
# folder) and its committed corpus test/fuzz/corpus/NAME/ (read only); a
# crash, leak, timeout or out-of-memory is saved as test/fuzz/crashes/NAME-*.
# libFuzzer's exit status (124 or 137: it did not stop in time).
sb_fuzz_run() {
	local name=$1 seconds=$2 scratch=$3 log=$4 bin rc=0
	shift 4
	bin=$(sb_fuzz_binary "$name") || return 2
	local corpus=()
	[ ! -d "test/fuzz/corpus/$name" ] || corpus=("test/fuzz/corpus/$name")
	mkdir -p "$scratch" test/fuzz/crashes
	timeout -k 10 $((seconds + 120)) "$bin" -max_total_time="$seconds" \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$SANDBAR_ROOT/test/fuzz/crashes/$name-" "$@" "$scratch" "${corpus[@]}" \
		</dev/null >"$log" 2>&1 || rc=$?
	return "$rc"
}

# sb_fuzz_runs LOG: "N runs" of a run's log.
sb_fuzz_runs() { grep -oE 'Done [0-9]+ runs' "$1" | tail -1 | grep -oE '[0-9]+ runs' || true; }

# sb_fuzz_report LOG: a failed run's report with our frames (not
# libFuzzer's or libc's), indented.
sb_fuzz_report() {
	{ grep -m1 -A 40 -E 'ERROR: |runtime error|check failed|deadly signal|Timeout' "$1" ||
		tail -n 20 "$1"; } |
		grep -vE ' in (fuzzer::|__sanitizer|_start|__libc|__pthread|raise |abort )|libc\.so|^stat::' |
		sed 's/ (BuildId: [0-9a-f]*)//; s/^/  | /' | head -n 20
}
