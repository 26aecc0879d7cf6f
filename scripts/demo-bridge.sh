#!/usr/bin/env bash
# Single-host demo: overlayd runs inside a namespace of its own (the "host"), the real
# docker CLI creates a bridge network, two namespaces ("containers") join it and ping
# each other. Everything it creates is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="ovdemo$$"
host="${tag}-host"
work=$(mktemp -d "/tmp/${tag}.XXXX")
sock="$work/overlayd.sock"
export DOCKER_HOST="unix://$sock"
pid=""

cleanup() {
  set +e
  [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  for ns in "${tag}-alpine1" "${tag}-alpine2" "$host"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
show() { say "$*"; "$@"; }

# The "host": its own namespace with an uplink and a default route, so this machine's
# network is untouched.
ip netns add "$host"
ip -n "$host" link set lo up
ip -n "$host" link add uplink0 type veth peer name uplink1
ip -n "$host" addr add 198.51.100.2/24 dev uplink0
ip -n "$host" link set uplink0 up
ip -n "$host" link set uplink1 up
ip -n "$host" route add default via 198.51.100.1

nsenter --net="/run/netns/$host" .venv/bin/overlayd run --socket "$sock" \
  --state-dir "$work/state" --log-format json >"$work/overlayd.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  docker version >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/overlayd.log"; exit 1; }
  sleep 0.05
done

echo "overlayd is running in namespace $host; DOCKER_HOST=$DOCKER_HOST"
show docker version --format 'Server: {{.Server.Version}} (API {{.Server.APIVersion}})'
show docker network ls
show docker network create --subnet 10.77.0.0/24 demo-net

# "Containers" are plain network namespaces.
ip netns add "${tag}-alpine1"
ip netns add "${tag}-alpine2"
show docker network connect demo-net "${tag}-alpine1"
show docker network connect demo-net "${tag}-alpine2"
show docker network inspect demo-net --format \
  '{{range .Containers}}{{.Name}} {{.IPv4Address}} {{.MacAddress}}{{"\n"}}{{end}}'

ip2=$(docker network inspect demo-net --format \
  "{{range .Containers}}{{if eq .Name \"${tag}-alpine2\"}}{{.IPv4Address}}{{end}}{{end}}")
ip2=${ip2%/*}
say "ip netns exec ${tag}-alpine1 ping -c 3 $ip2"
nsenter --net="/run/netns/${tag}-alpine1" ping -c 3 -i 0.2 "$ip2"

say "kill -9 overlayd, and ping again while it is down"
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; pid=""
nsenter --net="/run/netns/${tag}-alpine1" ping -c 2 -i 0.2 "$ip2"

say "restart overlayd: it adopts what the kernel holds"
nsenter --net="/run/netns/$host" .venv/bin/overlayd run --socket "$sock" \
  --state-dir "$work/state" --log-format json >>"$work/overlayd.log" 2>&1 &
pid=$!
for _ in $(seq 200); do docker version >/dev/null 2>&1 && break; sleep 0.05; done
show docker network inspect demo-net --format '{{len .Containers}} endpoints on {{.Name}}'

show docker network disconnect demo-net "${tag}-alpine1"
show docker network disconnect demo-net "${tag}-alpine2"
show docker network rm demo-net
echo
echo "demo finished: cleaning up"
