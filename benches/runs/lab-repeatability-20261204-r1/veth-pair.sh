#!/bin/bash
# two netns joined by a veth; args: CC (congestion) REPS [extra netload args]
set -u
CC=$1; REPS=$2; shift 2
NL=/work/main/target/release/netload
ip netns del rpa 2>/dev/null; ip netns del rpb 2>/dev/null
ip netns add rpa; ip netns add rpb
trap 'ip netns pids rpb | xargs -r kill; ip netns del rpa; ip netns del rpb' EXIT
ip link add va netns rpa type veth peer name vb netns rpb
ip -n rpa addr add 198.18.250.1/30 dev va; ip -n rpb addr add 198.18.250.2/30 dev vb
ip -n rpa link set va up; ip -n rpb link set vb up; ip -n rpa link set lo up; ip -n rpb link set lo up
for n in rpa rpb; do ip netns exec $n sysctl -w net.ipv4.tcp_congestion_control=$CC >/dev/null; done
[ -n "${GRO:-}" ] && { ip netns exec rpa ethtool -K va gro on; ip netns exec rpb ethtool -K vb gro on; }
[ -n "${RPS:-}" ] && { ip netns exec rpa sh -c "echo $RPS > /sys/class/net/va/queues/rx-0/rps_cpus"; ip netns exec rpb sh -c "echo $RPS > /sys/class/net/vb/queues/rx-0/rps_cpus"; }
ip netns exec rpb $NL server >/dev/null 2>&1 &
sleep 0.5
for i in $(seq $REPS); do
  st0=$(awk '/^cpu /{print $9}' /proc/stat); ip netns exec rpa nstat -n >/dev/null; 
  out=$(ip netns exec rpa $NL tcp 198.18.250.2 -t 4 --omit 1 --json "$@")
  g=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f rtx=%d" % (d["client"]["bits_per_second"]/1e9, d["client"]["retransmits"]))')
  c=$(ip netns exec rpa nstat -z 2>/dev/null | awk '$1~/TCPLossProbes|TCPSpuriousRTOs|TCPTimeouts|TCPSackRecovery|TCPLostRetransmit|TCPDSACKRecv|TCPFastRetrans|TcpExtTCPSlowStartRetrans/ && $2>0 {printf "%s=%s ", $1,$2}')
  st1=$(awk '/^cpu /{print $9}' /proc/stat); echo "$i $g steal=$((st1-st0)) $c"
done
