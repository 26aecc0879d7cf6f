#!/usr/bin/env bash
# The seed tutorial "Use an overlay network for standalone containers" on a 2-host lab:
# swarm init on host1, join host2, an attachable overlay network, alpine1 on host1 and
# alpine2 on host2 (network namespaces), ping across hosts, then clean up. Everything
# lives in namespaces (`overlayd lab`); this machine's own network is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="ovdemo$$-"
bin=.venv/bin
lab() { "$bin/overlayd" lab "$@" --prefix "$prefix"; }
cleanup() {
  set +e
  for c in alpine1 alpine2; do ip netns del "${prefix}${c}" 2>/dev/null; done
  lab down --purge >/dev/null 2>&1
}
trap cleanup EXIT

say() { printf '\n\033[1m%s$ %s\033[0m\n' "$1" "${*:2}"; }
on() { # on HOST CMD...: run a docker command against that host's daemon
  local h=$1; shift
  say "[$h] " "$@"
  DOCKER_HOST="unix:///run/overlayd-lab/${prefix}${h}.sock" "$@"
}

say "" overlayd lab up 2
lab up 2

on host1 docker swarm init --advertise-addr 192.0.2.1
token=$(DOCKER_HOST="unix:///run/overlayd-lab/${prefix}host1.sock" docker swarm join-token -q worker)
on host2 docker swarm join --token "$token" 192.0.2.1:2377
on host1 docker node ls
on host1 docker network create --driver=overlay --attachable test-net
on host2 docker network ls

# "Containers" are network namespaces: alpine1 on host1, alpine2 on host2.
ip netns add "${prefix}alpine1"
ip netns add "${prefix}alpine2"
on host1 docker network connect test-net "${prefix}alpine1"
on host2 docker network connect test-net "${prefix}alpine2"
ip2=$(DOCKER_HOST="unix:///run/overlayd-lab/${prefix}host2.sock" docker network inspect test-net \
  --format '{{range .Containers}}{{.IPv4Address}}{{end}}')
ip2=${ip2%/*}
say "[alpine1] " ping -c 3 "$ip2"
ip netns exec "${prefix}alpine1" ping -c 3 -W 2 "$ip2"

on host1 docker network disconnect test-net "${prefix}alpine1"
on host2 docker network disconnect test-net "${prefix}alpine2"
on host1 docker network rm test-net
on host2 docker swarm leave
on host1 docker swarm leave --force
printf '\ndemo finished: cleaning up\n'
