#!/usr/bin/env bash
# Shared set-up for tools/run, tools/test and tools/bench: Debian packages,
# dockerd, a private PostgreSQL 15 cluster, meson builds and the base image.
# Source it (functions only, nothing runs), or run it: setup.sh pg-stop|pg-start|...
# Every step prints one line; command output goes to a log shown only on failure.

SANDBAR_ROOT=${SANDBAR_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SANDBAR_DATA=${SANDBAR_DATA:-$SANDBAR_ROOT/.data}
SANDBAR_PG_PORT=${SANDBAR_PG_PORT:-54329}
SANDBAR_PG_BIN=${SANDBAR_PG_BIN:-/usr/lib/postgresql/15/bin}
export SANDBAR_ROOT SANDBAR_DATA SANDBAR_PG_PORT SANDBAR_PG_BIN

SB_PKGS_BUILD="gcc clang libclang-rt-14-dev meson ninja-build pkg-config libevent-dev
  libpq-dev libhttp-parser-dev uuid-dev libcmocka-dev libjson-c-dev libwslay-dev clang-format git"
SB_PKGS_RUN="docker.io postgresql-15 postgresql-client-15 debootstrap ca-certificates curl"
# nginx: the integration tests run tools/nginx/sandbar.conf in front of sandbard
# (and the benchmarks' baseline); Debian's nginx, never started as a service.
SB_PKGS_TEST="python3 python3-pytest jq nginx"
SB_PKGS_BENCH="wrk"
# runsc: gVisor, the opt-in sandbox runtime (SANDBAR_RUNTIMES=gvisor; README, "gVisor")
SB_PKGS_GVISOR="runsc"

sb_say() { printf '%s\n' "$*"; }
sb_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# sb_quiet LOG CMD...: runs CMD with its output in LOG; on failure shows the
# end of LOG and returns CMD's status.
sb_quiet() {
	local log=$1 rc=0
	shift
	mkdir -p "$(dirname "$log")"
	"$@" </dev/null >"$log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		# shellcheck disable=SC2016
		printf 'error: `%s` failed (exit %d); last lines of %s:\n' "$*" "$rc" "$log" >&2
		tail -n 40 "$log" | sed 's/^/  | /' >&2
	fi
	return "$rc"
}

# ---------------------------------------------------------------- packages
# sb_packages GROUP...: GROUP is build, run, test, bench or gvisor.
sb_packages() {
	local want="" g p missing=()
	for g in "$@"; do
		case $g in
		build) want="$want $SB_PKGS_BUILD" ;;
		run) want="$want $SB_PKGS_RUN" ;;
		test) want="$want $SB_PKGS_TEST" ;;
		bench) want="$want $SB_PKGS_BENCH" ;;
		gvisor) want="$want $SB_PKGS_GVISOR" ;;
		*) sb_die "sb_packages: unknown group $g" ;;
		esac
	done
	for p in $want; do
		if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -eq 0 ]; then
		sb_say "packages: ok ($*)"
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || sb_die "packages missing (${missing[*]}); run as root or install them"
	sb_say "packages: installing ${missing[*]}"
	# Keep postinst scripts from starting services (Debian's own PostgreSQL
	# cluster, dockerd): we start what we need ourselves.
	local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	local log=$SANDBAR_DATA/log/apt.log
	export DEBIAN_FRONTEND=noninteractive
	sb_quiet "$log" apt-get update -q || rc=$?
	if [ "$rc" -eq 0 ]; then
		sb_quiet "$log.install" apt-get install -y -q --no-install-recommends \
			-o Dpkg::Options::=--force-confold "${missing[@]}" || rc=$?
	fi
	[ "$made_policy" -eq 0 ] || rm -f "$policy"
	[ "$rc" -eq 0 ] || sb_die "package installation failed"
}

# ---------------------------------------------------------------- docker
sb_docker_ok() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Reuses a dockerd that answers (DOCKER_HOST or the default socket); else
# starts one in the background. It is shared: nothing here ever stops it.
sb_docker() {
	if sb_docker_ok; then
		sb_say "docker: ok ($(docker version --format '{{.Server.Version}}' 2>/dev/null), ${DOCKER_HOST:-unix:///var/run/docker.sock})"
		return 0
	fi
	if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != unix:///var/run/docker.sock ]; then
		sb_die "docker: DOCKER_HOST=$DOCKER_HOST does not answer (not starting a local dockerd for it)"
	fi
	command -v dockerd >/dev/null || sb_die "docker: dockerd not installed"
	[ "$(id -u)" -eq 0 ] || sb_die "docker: no dockerd answers and only root can start one"
	local dir=$SANDBAR_DATA/docker
	mkdir -p "$dir"
	# its own configuration file, so that runtimes can be added later with a
	# SIGHUP (sb_runtimes) without touching /etc/docker/daemon.json
	[ -s "$dir/daemon.json" ] || printf '{}\n' >"$dir/daemon.json"
	! sb_wants_gvisor || sb_daemon_json_runtime "$dir/daemon.json" || sb_die "docker: cannot write $dir/daemon.json"
	sb_say "docker: starting dockerd (log $dir/dockerd.log, config $dir/daemon.json)"
	setsid dockerd --pidfile "$dir/dockerd.pid" --config-file "$dir/daemon.json" </dev/null >>"$dir/dockerd.log" 2>&1 &
	for _ in $(seq 1 30); do
		sb_docker_ok && {
			sb_say "docker: ok (started, pid $(cat "$dir/dockerd.pid" 2>/dev/null))"
			return 0
		}
		sleep 1
	done
	tail -n 20 "$dir/dockerd.log" | sed 's/^/  | /' >&2
	sb_die "docker: dockerd did not answer within 30 s"
}

# ---------------------------------------------------------------- runtimes
# gVisor (SANDBAR_RUNTIMES=gvisor, or gvisor=NAME): Debian's runsc registered
# with dockerd as a runtime named sandbar-gvisor (or NAME). Its arguments are
# what works here (README, "gVisor"): --network=host (runsc then uses the
# container's own network namespace, set up by Docker; its own netstack
# refuses to start under dockerd 20.10 here) and --platform=ptrace (no usable
# KVM in these VMs; kvm hangs at create, systrap is newer than this runsc).
# cgroup v1 limits are applied by runsc as they are (no --ignore-cgroups).
SB_GVISOR_ARGS='["--network=host", "--platform=ptrace"]'

sb_wants_gvisor() {
	case ",${SANDBAR_RUNTIMES:-}," in
	*,gvisor,* | *,gvisor=*) return 0 ;;
	esac
	return 1
}

# The Docker runtime name SANDBAR_RUNTIMES gives gVisor.
sb_gvisor_name() {
	local item
	for item in ${SANDBAR_RUNTIMES//,/ }; do
		case $item in
		gvisor=?*) printf '%s\n' "${item#gvisor=}" && return 0 ;;
		esac
	done
	printf 'sandbar-gvisor\n'
}

sb_gvisor_json() { printf '{"path": "/usr/bin/runsc", "runtimeArgs": %s}' "$SB_GVISOR_ARGS"; }

# sb_daemon_json_runtime FILE: sets the gVisor runtime in dockerd's
# configuration FILE (made when missing), keeping the rest of it.
sb_daemon_json_runtime() {
	local file=$1 tmp
	tmp=$(mktemp "$file.XXXXXX") || return 1
	if [ -s "$file" ]; then cat "$file"; else printf '{}'; fi |
		jq --arg n "$(sb_gvisor_name)" --argjson rt "$(sb_gvisor_json)" '.runtimes[$n] = $rt' >"$tmp" &&
		chmod 644 "$tmp" && mv "$tmp" "$file" || {
		rm -f "$tmp"
		return 1
	}
}

# 0 when the dockerd that answers has the gVisor runtime with our arguments.
sb_gvisor_registered() {
	docker info --format '{{json .Runtimes}}' 2>/dev/null |
		jq -e --arg n "$(sb_gvisor_name)" --argjson rt "$(sb_gvisor_json)" \
			'.[$n].path == $rt.path and .[$n].runtimeArgs == $rt.runtimeArgs' >/dev/null 2>&1
}

# The pid of the dockerd listening on the default socket, or nothing.
sb_dockerd_pid() {
	ss -xlpH src /var/run/docker.sock 2>/dev/null | grep -o '"dockerd",pid=[0-9]*' | head -n 1 | cut -d= -f2
}

# sb_dockerd_arg PID FLAG: the value of --FLAG in dockerd PID's command line.
sb_dockerd_arg() {
	tr '\0' '\n' <"/proc/$1/cmdline" | awk -v f="--$2" '
		want { print; exit } $0 == f { want = 1 } index($0, f "=") == 1 { print substr($0, length(f) + 2); exit }'
}

# When SANDBAR_RUNTIMES asks for gvisor: makes sure the dockerd that answers
# has it. A dockerd these scripts started with its own --config-file (under
# some checkout's .data/docker/) gets the runtime in that file and a SIGHUP
# (dockerd reloads the `runtimes` key without a restart); any other dockerd
# is left alone, with what to add said. Exports SANDBAR_GVISOR=1 when it is
# registered (tools/test then provides `gvisor` to the tests).
sb_runtimes() {
	SANDBAR_GVISOR=0
	export SANDBAR_GVISOR
	sb_wants_gvisor || return 0
	local name pid conf pidfile
	name=$(sb_gvisor_name)
	[ -x /usr/bin/runsc ] || {
		sb_say "gvisor: /usr/bin/runsc missing (Debian's runsc); not registered"
		return 0
	}
	if sb_gvisor_registered; then
		SANDBAR_GVISOR=1
		sb_say "gvisor: ok (dockerd runtime $name: runsc $(runsc --version 2>/dev/null | head -n 1 | awk '{ print $3 }'))"
		return 0
	fi
	pid=$(sb_dockerd_pid)
	if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != unix:///var/run/docker.sock ]; then
		pid=""
	fi
	if [ -n "$pid" ]; then
		pidfile=$(sb_dockerd_arg "$pid" pidfile)
		conf=$(sb_dockerd_arg "$pid" config-file)
	fi
	# ours: started by sb_docker (a pid file in a .data/docker/ folder) with
	# its daemon.json beside it
	if [ -n "$pid" ] && [ -n "$conf" ] && [ "$(id -u)" -eq 0 ] &&
		[ "${pidfile%/.data/docker/dockerd.pid}" != "$pidfile" ] &&
		[ "$conf" = "$(dirname "$pidfile")/daemon.json" ]; then
		sb_daemon_json_runtime "$conf" || sb_die "gvisor: cannot write $conf"
		kill -HUP "$pid"
		for _ in $(seq 1 20); do
			if sb_gvisor_registered; then
				SANDBAR_GVISOR=1
				sb_say "gvisor: ok (runtime $name added to $conf, dockerd $pid reloaded)"
				return 0
			fi
			sleep 0.5
		done
		sb_say "gvisor: dockerd $pid did not take runtime $name from $conf (see its log)"
		return 0
	fi
	if [ -n "$pid" ] && [ -z "$conf" ] && [ "${pidfile%/.data/docker/dockerd.pid}" != "$pidfile" ]; then
		sb_say "gvisor: dockerd (pid $pid) has no runtime $name; these scripts started it before they gave"
		sb_say "  dockerd a --config-file of its own, so its configuration is /etc/docker/daemon.json,"
		sb_say "  which they leave alone."
	else
		sb_say "gvisor: dockerd${pid:+ (pid $pid)} has no runtime $name and was not started by these"
		sb_say "  scripts with a --config-file of theirs, so it is left alone."
	fi
	sb_say "  To register it, add to its daemon.json (${conf:-/etc/docker/daemon.json}) and send it"
	sb_say "  SIGHUP (kill -HUP <pid>; dockerd reloads runtimes without a restart):"
	sb_say "    \"runtimes\": {\"$name\": $(sb_gvisor_json)}"
}

# ---------------------------------------------------------------- postgresql
# Runs a command as the cluster's owner: root may not run postgres.
sb_as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Chooses where the cluster lives. The postgres user must be able to reach it;
# a repo under /root is not reachable, so it then lives under /var/lib.
sb_pg_paths() {
	[ -z "${SANDBAR_PG_DIR:-}" ] || return 0
	local base=$SANDBAR_DATA/pg
	if [ "$(id -u)" -eq 0 ]; then
		mkdir -p "$SANDBAR_DATA"
		if ! runuser -u postgres -- test -x "$SANDBAR_DATA"; then
			base=/var/lib/sandbar-pg/$(printf '%s' "$SANDBAR_DATA" | cksum | cut -d' ' -f1)
		fi
	fi
	SANDBAR_PG_DIR=$base
	SANDBAR_PG_SOCKDIR=${SANDBAR_PG_SOCKDIR:-$base/run}
	# a unix socket path must fit in 107 bytes
	if [ $((${#SANDBAR_PG_SOCKDIR} + 20)) -gt 107 ]; then
		SANDBAR_PG_SOCKDIR=/tmp/sandbar-pg-$(printf '%s' "$base" | cksum | cut -d' ' -f1)
	fi
	export SANDBAR_PG_DIR SANDBAR_PG_SOCKDIR
}

sb_pg_ctl() { sb_as_pg "$SANDBAR_PG_BIN/pg_ctl" -D "$SANDBAR_PG_DIR/data" "$@"; }
sb_pg_running() { sb_pg_ctl status >/dev/null 2>&1; }
sb_pg_url() { printf 'postgresql:///%s?host=%s&port=%s&user=postgres' "${1:-sandbar}" "$SANDBAR_PG_SOCKDIR" "$SANDBAR_PG_PORT"; }

sb_pg_init() {
	sb_pg_paths
	[ -s "$SANDBAR_PG_DIR/data/PG_VERSION" ] && return 0
	[ -x "$SANDBAR_PG_BIN/initdb" ] || sb_die "postgresql: $SANDBAR_PG_BIN/initdb missing (postgresql-15)"
	mkdir -p "$SANDBAR_PG_DIR/data" "$SANDBAR_PG_DIR/log" "$SANDBAR_PG_SOCKDIR"
	[ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$SANDBAR_PG_DIR" "$SANDBAR_PG_SOCKDIR"
	chmod 700 "$SANDBAR_PG_DIR/data"
	sb_quiet "$SANDBAR_DATA/log/initdb.log" sb_as_pg "$SANDBAR_PG_BIN/initdb" \
		-D "$SANDBAR_PG_DIR/data" -U postgres -E UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=reject ||
		sb_die "postgresql: initdb failed"
	# A throwaway development cluster: unix socket only, so it can never
	# collide with Debian's own cluster on 5432 or another checkout's cluster;
	# durability traded for speed.
	sb_as_pg tee -a "$SANDBAR_PG_DIR/data/postgresql.conf" >/dev/null <<-EOF

		# sandbar private cluster (tools/lib/setup.sh)
		listen_addresses = ''
		port = $SANDBAR_PG_PORT
		unix_socket_directories = '$SANDBAR_PG_SOCKDIR'
		max_connections = 300
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		log_min_messages = warning
	EOF
	sb_say "postgresql: initialised $SANDBAR_PG_DIR/data"
}

sb_pg_start() {
	sb_pg_init
	if ! sb_pg_running; then
		mkdir -p "$SANDBAR_PG_SOCKDIR"
		[ "$(id -u)" -ne 0 ] || chown postgres:postgres "$SANDBAR_PG_SOCKDIR"
		sb_quiet "$SANDBAR_DATA/log/pg_ctl.log" sb_pg_ctl -l "$SANDBAR_PG_DIR/log/postgresql.log" \
			-w -t 30 start || {
			tail -n 20 "$SANDBAR_PG_DIR/log/postgresql.log" | sed 's/^/  | /' >&2
			sb_die "postgresql: could not start the cluster in $SANDBAR_PG_DIR/data"
		}
	fi
}

sb_pg_stop() {
	sb_pg_paths
	if sb_pg_running; then
		sb_quiet "$SANDBAR_DATA/log/pg_ctl.log" sb_pg_ctl -m fast -w -t 30 stop ||
			sb_die "postgresql: could not stop the cluster"
	fi
}

# sb_pg_database NAME: creates database NAME in the running private cluster
# unless it is there. NAME is a plain identifier (letters, digits, _).
sb_pg_database() {
	local url
	url=$(sb_pg_url postgres)
	if [ "$(psql "$url" -XtAc "SELECT 1 FROM pg_database WHERE datname = '$1'")" != 1 ]; then
		sb_quiet "$SANDBAR_DATA/log/psql.log" psql "$url" -Xqc "CREATE DATABASE $1" ||
			sb_die "postgresql: could not create database $1"
	fi
}

# Uses DATABASE_URL when set; else starts the private cluster, creates the
# database `sandbar` and exports DATABASE_URL pointing at it.
sb_postgres() {
	if [ -n "${DATABASE_URL:-}" ] && [ "${SANDBAR_PG_MANAGED:-0}" != 1 ]; then
		sb_say "postgresql: using DATABASE_URL from the environment"
		return 0
	fi
	sb_pg_start
	sb_pg_database sandbar
	DATABASE_URL=$(sb_pg_url sandbar)
	SANDBAR_PG_MANAGED=1
	export DATABASE_URL SANDBAR_PG_MANAGED
	sb_say "postgresql: ok (private cluster, socket $SANDBAR_PG_SOCKDIR port $SANDBAR_PG_PORT)"
}

# ---------------------------------------------------------------- build
# sb_build DIR [MESON-OPTION...]: configures DIR once (CC from the
# environment), then builds it. Options only apply to a fresh DIR.
sb_build() {
	local dir=$1
	shift
	local abs=$SANDBAR_ROOT/$dir log=$SANDBAR_DATA/log/build-${dir//\//_}.log
	if [ ! -f "$abs/build.ninja" ]; then
		sb_quiet "$log.setup" meson setup "$abs" "$SANDBAR_ROOT" "$@" ||
			sb_die "build: meson setup $dir failed"
	elif [ -n "$(find "$SANDBAR_ROOT/test/fuzz" -name 'fuzz_*.c' -newer "$abs/build.ninja" 2>/dev/null)" ]; then
		# fuzz targets are picked up with fs.exists(), which meson does not watch
		sb_quiet "$log.setup" meson setup --reconfigure "$abs" "$SANDBAR_ROOT" ||
			sb_die "build: meson setup --reconfigure $dir failed"
	fi
	if ! ninja -C "$abs" </dev/null >"$log" 2>&1; then
		# a fuzz target that went away (fs.exists again): reconfigure once
		sb_quiet "$log.setup" meson setup --reconfigure "$abs" "$SANDBAR_ROOT" ||
			sb_die "build: meson setup --reconfigure $dir failed"
		sb_quiet "$log" ninja -C "$abs" || sb_die "build: ninja -C $dir failed"
	fi
	sb_say "build: ok ($dir)"
}

# ---------------------------------------------------------------- images
sb_base_image() {
	if docker image inspect sandbar/base:latest >/dev/null 2>&1; then
		sb_say "image: ok (sandbar/base:latest)"
		return 0
	fi
	sb_say "image: building sandbar/base:latest (debootstrap, a few minutes)"
	sb_quiet "$SANDBAR_DATA/log/build-base.log" "$SANDBAR_ROOT/tools/image/build-base" ||
		sb_die "image: tools/image/build-base failed"
	sb_say "image: ok (sandbar/base:latest built)"
}

# The agents template's CLIs (sandbar/agent-clis): an npm install on the host
# of devcontainers/agents/package-lock.json, made once per lock (about a
# minute); sandbard then builds the template's own image like the others'.
sb_agent_clis() {
	if ! command -v npm >/dev/null; then
		[ "$(id -u)" -eq 0 ] || sb_die "image: npm missing for sandbar/agent-clis; install Debian's npm"
		sb_quiet "$SANDBAR_DATA/log/apt-npm.log" apt-get install -y -q --no-install-recommends npm ||
			sb_die "image: could not install npm"
	fi
	sb_quiet "$SANDBAR_DATA/log/build-agent-clis.log" "$SANDBAR_ROOT/tools/image/build-agent-clis" ||
		sb_die "image: tools/image/build-agent-clis failed"
	sb_say "image: ok (sandbar/agent-clis:latest)"
}

# sb_setup GROUP...: packages of the groups (and runsc when SANDBAR_RUNTIMES
# asks for gvisor), then docker and its runtimes, postgresql, images.
sb_setup() {
	mkdir -p "$SANDBAR_DATA/log"
	if sb_wants_gvisor; then sb_packages "$@" gvisor; else sb_packages "$@"; fi
	sb_docker
	sb_runtimes
	sb_postgres
	sb_base_image
	sb_agent_clis
}

# Run as a command: helpers for tests and people.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	case ${1:-} in
	pg-start) sb_postgres ;;
	pg-stop) sb_pg_stop && sb_say "postgresql: stopped" ;;
	pg-status)
		sb_pg_paths
		if sb_pg_running; then sb_say "postgresql: running"; else
			sb_say "postgresql: stopped"
			exit 3
		fi
		;;
	pg-url) sb_pg_paths && sb_pg_url "${2:-sandbar}" && echo ;;
	docker)
		sb_docker
		sb_runtimes
		;;
	setup)
		shift
		[ $# -gt 0 ] || set -- build run test
		sb_setup "$@"
		;;
	*)
		echo "usage: $0 pg-start|pg-stop|pg-status|pg-url [db]|docker|setup [build run test bench]" >&2
		exit 2
		;;
	esac
fi
