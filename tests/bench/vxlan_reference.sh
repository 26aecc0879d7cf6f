#!/bin/bash
# The kernel's own figure for the overlay path, without overlayd: Docker's layout built by
# hand (two host namespaces on an underlay bridge; per host a sandbox namespace with br0
# and a vxlan device made in the host and moved in; a container veth on br0; static FDB
# and neigh entries), then iperf3 underlay vs overlay, 3 pairs of 4 s. Compare with the
# ratio tests/bench/overlay_cluster.py reports for overlayd. Needs root, iperf3.
#   bash tests/bench/vxlan_reference.sh
set -e
P=hvx$$
cleanup() { for n in ul h1 h2 s1 s2 c1 c2; do ip netns del $P$n 2>/dev/null; done; }
trap cleanup EXIT
for n in ul h1 h2 s1 s2 c1 c2; do ip netns add $P$n; ip -n $P$n link set lo up; done
ip -n ${P}ul link add br0 type bridge; ip -n ${P}ul link set br0 up
for i in 1 2; do
  ip -n ${P}ul link add u$i type veth peer name eth0 netns $P"h$i"
  ip -n ${P}ul link set u$i master br0 up
  ip -n $P"h$i" addr add 192.0.2.$i/24 dev eth0; ip -n $P"h$i" link set eth0 up
  # sandbox: br0 + vxlan created in host ns then moved
  ip -n $P"s$i" link add br0 type bridge; ip -n $P"s$i" addr add 10.9.0.254/24 dev br0 2>/dev/null || true
  ip -n $P"s$i" link set br0 mtu 1450 up
  ip -n $P"h$i" link add vx$i type vxlan id 42 dstport 4789 local 192.0.2.$i nolearning proxy noudpcsum
  ip -n $P"h$i" link set vx$i netns $P"s$i"
  ip -n $P"s$i" link set vx$i mtu 1450 master br0 up
  ip -n $P"s$i" link add ve$i type veth peer name eth0 netns $P"c$i"
  ip -n $P"s$i" link set ve$i mtu 1450 master br0 up
  ip -n $P"c$i" addr add 10.9.0.$i/24 dev eth0; ip -n $P"c$i" link set eth0 mtu 1450 up
done
M1=$(ip -n ${P}c1 -o link show eth0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)
M2=$(ip -n ${P}c2 -o link show eth0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)
bridge -n ${P}s1 fdb add $M2 dev vx1 dst 192.0.2.2 self permanent
bridge -n ${P}s2 fdb add $M1 dev vx2 dst 192.0.2.1 self permanent
ip -n ${P}s1 neigh add 10.9.0.2 lladdr $M2 dev vx1 nud permanent
ip -n ${P}s2 neigh add 10.9.0.1 lladdr $M1 dev vx2 nud permanent
ip netns exec ${P}c1 ping -c 2 -W 1 10.9.0.2 >/dev/null && echo ping ok
run() { # server-ns client-ns dst
  ip netns exec $1 iperf3 -s -1 >/dev/null 2>&1 & sleep 0.3
  ip netns exec $2 iperf3 -c $3 -t 4 -J | python3 -c "import json,sys; print(round(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9,2))"
  wait
}
for k in 1 2 3; do echo "underlay $(run ${P}h2 ${P}h1 192.0.2.2) overlay $(run ${P}c2 ${P}c1 10.9.0.2)"; done
rtt() { ip netns exec $1 ping -c 20 -i 0.05 -q $2 | awk -F/ '/rtt/ {print $5}'; }
echo "rtt avg ms: underlay $(rtt ${P}h1 192.0.2.2) overlay $(rtt ${P}c1 10.9.0.2)"
