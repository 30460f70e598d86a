#!/usr/bin/env bash
# Forward this Mac's Tailscale address to the rerank API on 127.0.0.1 with socat, kept alive by launchd,
# so machines and Docker containers on the tailnet reach a server that listens on loopback only.
#
#   ./setup-socat.sh                 forward <tailscale-ip>:8080 -> 127.0.0.1:8080 (LaunchAgent com.user.rerank-socat)
#   ./setup-socat.sh --with-redis    also <tailscale-ip>:6379 -> 127.0.0.1:6379 (com.user.rerank-socat-redis),
#                                    for clients that enqueue jobs directly; Redis must require a password
#   ./setup-socat.sh --dry-run       print what would be done, change nothing
#   ./setup-socat.sh --uninstall     unload and delete both agents
#
# Options: --port N (API port, default 8080), --redis-port N (default 6379).
# Environment: LAUNCH_AGENTS_DIR (default ~/Library/LaunchAgents), RERANK_LOG_DIR (default ~/.rerank-server/logs).
# Safe to re-run: an unchanged, loaded agent is left alone; a changed one is booted out and loaded again.
set -euo pipefail

API_LABEL=com.user.rerank-socat
REDIS_LABEL=com.user.rerank-socat-redis

port=8080
redis_port=6379
with_redis=0
dry_run=0
uninstall=0

die() {
  echo "setup-socat.sh: $*" >&2
  exit 1
}

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="${2:-}"; shift 2 || die "--port needs a value" ;;
    --redis-port) redis_port="${2:-}"; shift 2 || die "--redis-port needs a value" ;;
    --with-redis) with_redis=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done
for p in "$port" "$redis_port"; do
  case "$p" in '' | *[!0-9]*) die "ports must be numbers, got '$p'" ;; esac
done

agents_dir="${LAUNCH_AGENTS_DIR:-$HOME/Library/LaunchAgents}"
log_dir="${RERANK_LOG_DIR:-$HOME/.rerank-server/logs}"

run() {
  # Print a command that changes something; run it unless this is a dry run.
  echo "+ $*"
  if [ "$dry_run" = 0 ]; then "$@"; fi
}

launchctl_bin() {
  command -v launchctl >/dev/null 2>&1 || die "launchctl not found: this script sets up a macOS LaunchAgent"
  domain="gui/$(id -u)"
}

loaded() { launchctl print "$domain/$1" >/dev/null 2>&1; }

bootout() {
  # Unload $1 and wait until launchd has let it go (bootstrap fails until then).
  run launchctl bootout "$domain/$1" || true
  [ "$dry_run" = 1 ] && return 0
  local tries=0
  while loaded "$1"; do
    tries=$((tries + 1))
    [ "$tries" -gt 40 ] && die "$1 is still loaded 20 s after launchctl bootout"
    sleep 0.5
  done
}

if [ "$uninstall" = 1 ]; then
  launchctl_bin
  for label in "$API_LABEL" "$REDIS_LABEL"; do
    if loaded "$label"; then bootout "$label"; fi
    if [ -f "$agents_dir/$label.plist" ]; then run rm "$agents_dir/$label.plist"; fi
  done
  echo "logs kept in $log_dir"
  exit 0
fi

tailscale=""
if command -v tailscale >/dev/null 2>&1; then
  tailscale="$(command -v tailscale)"
elif [ -x /Applications/Tailscale.app/Contents/MacOS/Tailscale ]; then
  tailscale=/Applications/Tailscale.app/Contents/MacOS/Tailscale
else
  die "tailscale not found: install Tailscale (https://tailscale.com/download/mac or brew install tailscale) and sign in"
fi
ts_ip="$("$tailscale" ip -4 2>/dev/null | head -n 1 || true)"
case "$ts_ip" in
  *[!0-9.]* | '' | *..* | .* | *.) die "no Tailscale IPv4 address ('$tailscale ip -4' gave '$ts_ip'): is Tailscale connected? (tailscale up)" ;;
esac

socat="$(command -v socat || true)"
[ -n "$socat" ] || die "socat not found: brew install socat"

case "$socat$log_dir$agents_dir" in
  *[\&\<\>]*) die "paths containing &, < or > cannot go into a plist: $socat, $log_dir, $agents_dir" ;;
esac

if [ "$with_redis" = 1 ]; then
  # Through socat every tailnet peer looks like 127.0.0.1 to Redis, so protected mode does not apply:
  # forward only a Redis that refuses commands without a password.
  reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$redis_port" && printf 'PING\r\n' >&3 && IFS= read -r -t 3 line <&3 && printf '%s' "$line") 2>/dev/null || true)"
  case "$reply" in
    -NOAUTH*) ;;
    +PONG*) die "Redis on 127.0.0.1:$redis_port answers without a password; forwarding it would let anyone on the tailnet use it. Set one (requirepass), e.g. rerank-server launchd install --with-redis --redis-url redis://:PASSWORD@127.0.0.1:$redis_port/0" ;;
    *) die "no Redis answers on 127.0.0.1:$redis_port; start it (with a password) before forwarding it" ;;
  esac
fi

plist() {
  # plist LABEL PORT LOGNAME: a KeepAlive agent running socat from <tailscale-ip>:PORT to 127.0.0.1:PORT.
  cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>$1</string>
	<key>ProgramArguments</key>
	<array>
		<string>$socat</string>
		<string>-d</string>
		<string>TCP4-LISTEN:$2,bind=$ts_ip,reuseaddr,fork</string>
		<string>TCP4:127.0.0.1:$2</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<true/>
	<key>ThrottleInterval</key>
	<integer>10</integer>
	<key>StandardOutPath</key>
	<string>$log_dir/$3.stdout.log</string>
	<key>StandardErrorPath</key>
	<string>$log_dir/$3.stderr.log</string>
</dict>
</plist>
EOF
}

setup() {
  # setup LABEL PORT LOGNAME: write the agent and (re)load it unless it is already loaded unchanged.
  local label=$1 path="$agents_dir/$1.plist" content
  content="$(plist "$1" "$2" "$3")"
  if [ "$dry_run" = 1 ]; then
    echo "# $path"
    printf '%s\n' "$content"
    echo "+ launchctl bootout $domain/$label   (if loaded)"
    echo "+ launchctl bootstrap $domain $path"
    return 0
  fi
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ] && loaded "$label"; then
    echo "$label: unchanged and loaded ($ts_ip:$2 -> 127.0.0.1:$2)"
    return 0
  fi
  if loaded "$label"; then bootout "$label"; fi
  mkdir -p "$agents_dir" "$log_dir"
  printf '%s\n' "$content" >"$path"
  run launchctl bootstrap "$domain" "$path"
  echo "$label: forwarding $ts_ip:$2 -> 127.0.0.1:$2 (log: $log_dir/$3.stderr.log)"
}

launchctl_bin
setup "$API_LABEL" "$port" socat
if [ "$with_redis" = 1 ]; then setup "$REDIS_LABEL" "$redis_port" socat-redis; fi

[ "$dry_run" = 1 ] && exit 0
cat <<EOF
Check it:
  lsof -i :$port                          # Python on 127.0.0.1:$port and socat on $ts_ip:$port
  curl http://$ts_ip:$port/health
From Docker on another machine: extra_hosts: ["rerank-external:$ts_ip"], then http://rerank-external:$port
EOF
