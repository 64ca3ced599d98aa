#!/usr/bin/env bash
# Make sure a PostgreSQL server answers at a database URL, for `make run`,
# `make test` and `make bench`, without a system service.
#
#   deploy/local/postgres.sh ensure [URL | VARIABLE]   (default: RAPPORT_TEST_DATABASE_URL)
#   deploy/local/postgres.sh stop                      stop the private cluster
#   deploy/local/postgres.sh status                    is the private cluster running?
#
# ensure, in order:
#   1. A server already answers at the URL's host and port (the usual case on
#      CI and on a machine with PostgreSQL running): nothing to start; only
#      the URL's database is created if it is missing.
#   2. Something that is not PostgreSQL holds the port: say so, exit 2.
#   3. PostgreSQL's server binaries are installed (initdb and pg_ctl on PATH,
#      else the newest /usr/lib/postgresql/*/bin, or Homebrew's): initialise a
#      private cluster in $RAPPORT_LOCAL_PGDATA (default .data/postgres at the
#      repository root) with `initdb -U postgres --auth=trust` if there is none
#      yet, start it with pg_ctl on the URL's host and port (unix socket in the
#      data directory, log in <data dir>/server.log), wait until it is ready,
#      then create the URL's role and database if missing.
#   4. Nothing installed: say what to install, exit 2.
#
# initdb and postgres refuse to run as root. As root, they run as the user
# `postgres` if it exists, else as a system user `rapport-pg` created here;
# the data directory belongs to that user.
#
# The private cluster keeps running after `make run` or `make test` ends, so
# the next run starts at once; `make clean-data` stops it and removes it.
#
# The argument is a URL (postgres://user[:password]@host[:port]/database?...)
# or the name of an environment variable holding one. Exit status: 0 ready,
# 1 failed, 2 the machine needs something (a package, a free port).
set -euo pipefail

readonly ADMIN_URL_DEFAULT='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
readonly APP_URL_DEFAULT='postgres://postgres@127.0.0.1:5432/rapport?sslmode=disable'

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
pgdata=${RAPPORT_LOCAL_PGDATA:-$repo_root/.data/postgres}
[[ $pgdata == /* ]] || pgdata=$PWD/$pgdata

say() { printf 'postgres: %s\n' "$*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# --- the URL --------------------------------------------------------------

# resolve_url ARG prints the URL an argument stands for.
resolve_url() {
	local arg=${1:-RAPPORT_TEST_DATABASE_URL}
	if [[ $arg =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
		if [[ -n ${!arg:-} ]]; then
			printf '%s\n' "${!arg}"
			return
		fi
		case $arg in
		RAPPORT_DATABASE_URL) printf '%s\n' "$APP_URL_DEFAULT" ;;
		*) printf '%s\n' "$ADMIN_URL_DEFAULT" ;;
		esac
		return
	fi
	printf '%s\n' "$arg"
}

# urldecode S: %XX escapes to bytes.
urldecode() { local s=${1//+/ }; printf '%b' "${s//%/\\x}"; }

# parse_url URL sets: target_url scheme userinfo user password host port db query.
parse_url() {
	local re='^(postgres|postgresql)://(([^@/?]*)@)?([^/?]*)(/([^?]*))?(\?(.*))?$'
	[[ $1 =~ $re ]] || die "not a postgres:// URL: $(redact "$1")" 2
	target_url=$1
	scheme=${BASH_REMATCH[1]}
	userinfo=${BASH_REMATCH[3]}
	local hostport=${BASH_REMATCH[4]}
	db=$(urldecode "${BASH_REMATCH[6]}")
	query=${BASH_REMATCH[8]}
	user=$(urldecode "${userinfo%%:*}")
	password=
	[[ $userinfo == *:* ]] && password=$(urldecode "${userinfo#*:}")
	[[ $hostport == *,* ]] && die "URLs with several hosts are not supported: $(redact "$1")" 2
	if [[ $hostport =~ ^\[([^]]*)\](:([0-9]*))?$ ]]; then # [IPv6]:port
		host=${BASH_REMATCH[1]} port=${BASH_REMATCH[3]}
	elif [[ $hostport == *:* ]]; then
		host=${hostport%:*} port=${hostport##*:}
	else
		host=$hostport port=
	fi
	host=${host:-127.0.0.1} port=${port:-5432} user=${user:-postgres} db=${db:-$user}
	[[ $port =~ ^[0-9]+$ ]] || die "bad port in $(redact "$1")" 2
}

# redact URL hides a password, for messages.
redact() { sed -E 's#^([a-z]+://[^:/@]*):[^@/]*@#\1:REDACTED@#' <<<"$1"; }

# url_for DB prints the URL with another database name.
url_for() {
	local u="$scheme://"
	[[ -n $userinfo ]] && u+="$userinfo@"
	[[ $host == *:* ]] && u+="[$host]:$port" || u+="$host:$port"
	u+="/$1"
	[[ -n $query ]] && u+="?$query"
	printf '%s\n' "$u"
}

is_local_host() { [[ $host == localhost || $host == 127.* || $host == ::1 ]]; }

# --- the server at the URL ------------------------------------------------

# need_client sets pg_isready and psql: those on PATH if they run (Debian's
# /usr/bin ones are wrappers that fail without a client package), else those
# beside the server programs.
need_client() {
	local d
	for d in "" "$(find_bindir || true)/"; do
		[[ $d == / ]] && continue
		if "${d}pg_isready" --version >/dev/null 2>&1 && "${d}psql" --version >/dev/null 2>&1; then
			pg_isready=${d}pg_isready psql=${d}psql
			return
		fi
	done
	install_hint "the PostgreSQL client programs (psql, pg_isready) are not installed"
}

install_hint() {
	say "$1. Install PostgreSQL 15 or newer:"
	say "  Debian/Ubuntu: sudo apt-get install postgresql"
	say "  macOS:         brew install postgresql@15   (then put \$(brew --prefix postgresql@15)/bin on PATH)"
	say "or point the URL at a running server."
	exit 2
}

# ping prints pg_isready's status: 0 accepting, 1 rejecting (starting up or
# shutting down), 2 no answer, 3 bad parameters.
ping() {
	local rc=0
	"$pg_isready" -q -t 3 -h "$host" -p "$port" || rc=$?
	echo "$rc"
}

wait_ready() {
	local i
	for ((i = 0; i < 60; i++)); do
		[[ $(ping) == 0 ]] && return 0
		sleep 0.5
	done
	return 1
}

# port_taken: does anything accept TCP connections on host:port?
port_taken() {
	local h=$host
	[[ $h == localhost ]] && h=127.0.0.1
	local t=()
	command -v timeout >/dev/null && t=(timeout 3)
	# shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
	${t[@]+"${t[@]}"} bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$h" "$port" 2>/dev/null
}

# ensure_database creates the URL's role (in a private cluster) and database
# when missing. It connects to the `postgres` database as the URL's user, or
# as postgres when the role has still to be made.
ensure_database() {
	local as_admin=$1 admin_url
	if [[ $as_admin == yes && $user != postgres ]]; then
		admin_url="$scheme://postgres@127.0.0.1:$port/postgres"
		[[ $host == *:* ]] && admin_url="$scheme://postgres@[$host]:$port/postgres"
		"$psql" -X -q -w -v ON_ERROR_STOP=1 -v role="$user" -v pw="$password" "$admin_url" <<-'SQL' >/dev/null
			SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'role')
			WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
			SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'pw') WHERE :'pw' <> '' \gexec
		SQL
	fi
	# A connection to the URL itself works: nothing to do.
	"$psql" -X -q -w -c 'SELECT 1' "$target_url" >/dev/null 2>&1 && return 0
	local out
	if ! out=$("$psql" -X -q -w -v ON_ERROR_STOP=1 -v db="$db" "$(url_for postgres)" 2>&1 <<-'SQL'
		SELECT format('CREATE DATABASE %I', :'db')
		WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
	SQL
	); then
		say "a server answers at $host:$port, but creating database \"$db\" as \"$user\" failed:"
		printf '%s\n' "$out" >&2
		die "fix the URL's user or password, or create the database yourself (createdb -h $host -p $port -U <superuser> $db)"
	fi
}

# --- the private cluster ---------------------------------------------------

# find_bindir prints the directory with initdb and pg_ctl: PATH first, then
# the newest Debian or Homebrew installation.
find_bindir() {
	local initdb pg_ctl d
	initdb=$(command -v initdb || true)
	pg_ctl=$(command -v pg_ctl || true)
	if [[ -n $initdb && -n $pg_ctl ]]; then
		dirname "$pg_ctl"
		return
	fi
	for d in $(printf '%s\n' /usr/lib/postgresql/*/bin /opt/homebrew/opt/postgresql@*/bin \
		/usr/local/opt/postgresql@*/bin /usr/pgsql-*/bin | sort -V -r); do
		[[ -x $d/initdb && -x $d/pg_ctl ]] && { printf '%s\n' "$d"; return; }
	done
	return 1
}

# run_as is the command prefix that runs PostgreSQL's server programs: none
# for a normal user; as root, the data directory's owner, or postgres, or a
# new system user rapport-pg.
run_as=()
pick_user() {
	((EUID == 0)) || return 0
	local u=
	if [[ -e $pgdata/PG_VERSION ]]; then
		u=$(stat -c %U "$pgdata")
		[[ $u == root ]] && die "$pgdata belongs to root, but PostgreSQL cannot run as root; remove it (make clean-data) and run again"
	elif id -u postgres >/dev/null 2>&1; then
		u=postgres
	elif id -u rapport-pg >/dev/null 2>&1; then
		u=rapport-pg
	elif command -v useradd >/dev/null; then
		say "running as root; creating system user rapport-pg to run PostgreSQL (it refuses to run as root)"
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin rapport-pg
		u=rapport-pg
	else
		die "PostgreSQL refuses to run as root, and there is no postgres user and no useradd. Run this as a normal user, or create one (e.g. adduser --system rapport-pg) and run again." 2
	fi
	command -v runuser >/dev/null ||
		die "running as root needs runuser (util-linux) to start PostgreSQL as $u; or run as a normal user" 2
	run_as=(runuser -u "$u" --)
	pg_user=$u
}

# as_pg CMD...: run a PostgreSQL server program as run_as says.
as_pg() {
	if ((${#run_as[@]} > 0)); then "${run_as[@]}" "$@"; else "$@"; fi
}

prepare_datadir() {
	mkdir -p "$pgdata"
	[[ -n ${pg_user:-} ]] || return 0
	chown "$pg_user:" "$pgdata"
	chmod 700 "$pgdata"
	if ! as_pg test -w "$pgdata"; then
		die "user $pg_user cannot reach $pgdata (a parent directory is closed to it); set RAPPORT_LOCAL_PGDATA to a directory it can reach, e.g. RAPPORT_LOCAL_PGDATA=/var/tmp/rapport-pg" 2
	fi
}

# cluster_port prints the port a running private cluster listens on.
cluster_port() { sed -n 4p "$pgdata/postmaster.pid" 2>/dev/null; }

cluster_running() {
	[[ -e $pgdata/PG_VERSION ]] || return 1
	as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1
}

start_cluster() {
	bindir=$(find_bindir) || install_hint "no PostgreSQL server programs (initdb, pg_ctl) found on PATH or under /usr/lib/postgresql"
	pick_user
	local version
	version=$("$bindir/pg_ctl" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
	if [[ -e $pgdata/PG_VERSION ]]; then
		local have
		have=$(<"$pgdata/PG_VERSION")
		[[ $have == "$version" ]] ||
			die "$pgdata holds a PostgreSQL $have cluster but $bindir is PostgreSQL $version; remove it (make clean-data) or set RAPPORT_LOCAL_PGDATA" 2
		if cluster_running; then
			die "the private cluster in $pgdata runs on port $(cluster_port), not $port; stop it (deploy/local/postgres.sh stop) or use port $(cluster_port)" 2
		fi
	elif [[ -d $pgdata && -n $(ls -A "$pgdata") ]]; then
		die "$pgdata is not empty and holds no PostgreSQL cluster; remove it or set RAPPORT_LOCAL_PGDATA" 2
	else
		prepare_datadir
		say "creating a private PostgreSQL $version cluster in $pgdata (initdb from $bindir)"
		local out
		out=$(as_pg "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust \
			--encoding=UTF8 --locale=C.UTF-8 2>&1) ||
			out=$(as_pg "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust \
				--encoding=UTF8 --no-locale 2>&1) ||
			{ printf '%s\n' "$out" >&2; die "initdb failed"; }
	fi
	prepare_datadir

	# The unix socket lives in the data directory; its path must fit in
	# sun_path (107 bytes), else only TCP is offered.
	local sockdir=$pgdata listen=$host
	((${#sockdir} + 20 > 107)) && sockdir=
	[[ $host == localhost ]] && listen=localhost
	say "starting it on $host:$port (log: $pgdata/server.log)"
	if ! as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
		-o "-c listen_addresses='$listen' -p $port -k '$sockdir'" start >/dev/null; then
		tail -n 20 "$pgdata/server.log" >&2 || true
		die "the private cluster did not start; see $pgdata/server.log"
	fi
	wait_ready || die "the private cluster started but does not answer at $host:$port; see $pgdata/server.log"
}

# --- commands ---------------------------------------------------------------

cmd_ensure() {
	local url
	url=$(resolve_url "${1:-}")
	parse_url "$url"
	need_client
	# Our own private cluster may get roles as well as databases.
	local ours=no
	[[ -e $pgdata/postmaster.pid && $(cluster_port) == "$port" ]] && is_local_host && ours=yes
	case $(ping) in
	0)
		ensure_database "$ours"
		return
		;;
	1)
		say "the server at $host:$port is starting or stopping; waiting"
		if wait_ready; then
			ensure_database "$ours"
			return
		fi
		die "the server at $host:$port does not accept connections (pg_isready: rejecting)"
		;;
	3) die "pg_isready refused the parameters host=$host port=$port" 2 ;;
	esac
	is_local_host ||
		die "no PostgreSQL answers at $host:$port, and a private cluster can only run on this machine (127.0.0.1, localhost)" 2
	if port_taken; then
		local who
		who=$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'users:(("[^"]*"' | head -1 | cut -d'"' -f2 || true)
		die "port $port on $host is taken by something that is not PostgreSQL${who:+ ($who)}; free it or put another port in the URL ($(redact "$url"))" 2
	fi
	start_cluster
	ensure_database yes
	say "ready: $(redact "$url")"
}

cmd_stop() {
	if [[ ! -e $pgdata/PG_VERSION ]]; then
		say "no private cluster in $pgdata"
		return
	fi
	bindir=$(find_bindir) || die "no pg_ctl found to stop the cluster in $pgdata"
	pick_user
	if ! cluster_running; then
		say "the private cluster in $pgdata is not running"
		return
	fi
	say "stopping the private cluster in $pgdata (port $(cluster_port))"
	as_pg "$bindir/pg_ctl" -D "$pgdata" -m fast -w -t 60 stop >/dev/null
}

cmd_status() {
	if [[ ! -e $pgdata/PG_VERSION ]]; then
		say "no private cluster in $pgdata"
		return 3
	fi
	bindir=$(find_bindir) || die "no pg_ctl found"
	pick_user
	if cluster_running; then
		say "the private cluster in $pgdata runs on port $(cluster_port)"
	else
		say "the private cluster in $pgdata is stopped"
		return 3
	fi
}

case ${1:-} in
ensure) shift; cmd_ensure "$@" ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) usage ;;
esac
