#!/usr/bin/env bash
# Adaptive rate on a real shaped link (issue 5).
#
# An edge in the root network namespace, one agent in a network namespace of its own,
# joined by a veth pair (10.203.x.0/30). The agent's uplink (the namespace end of the veth)
# is shaped with tc: netem rate + delay where the kernel has netem, tbf rate otherwise.
# The phases change the uplink rate (by default 2 Mbit/s, then 100 kbit/s, then 2 Mbit/s
# again: at 20 frames/s the AECNN points need about 70 (k=1) to 130 (k=16) kbit/s on the
# wire, headers and ACKs included), and the agent, run with --latency-goal, should move to a
# lower point within seconds of the drop and back up after the recovery. Prints the
# timeline of its operating-point changes and a summary per phase.
#
# Needs root (network namespaces, tc), ip, tc and node, and the built CLI (npm run build).
# Usage: sudo scripts/adaptive-rate-demo.sh [options]   (--help lists them)
# Exit status: 0 when the agent stepped down after the drop and back up after the recovery
# (with --no-adapt: when the run completed), 1 when it did not, 2 when it cannot run here.
set -euo pipefail

HIGH=2mbit
LOW=100kbit
PHASES=15,25,20 # seconds: high, low, high
DELAY_MS=10     # one-way delay each way (netem only)
GOAL_MS=150
FPS=20
POINT=4
MAX_KBPS=
ADAPT=1
KEEP=0
PORT=18830

usage() {
  cat <<EOF
usage: $0 [options]
  --high RATE      uplink rate of the outer phases (tc syntax; default $HIGH)
  --low RATE       uplink rate of the middle phase (default $LOW)
  --phases A,B,C   phase lengths in seconds: high, low, high (default $PHASES)
  --delay MS       one-way delay on each side of the link, with netem (default $DELAY_MS)
  --goal MS        the agent's latency goal, --latency-goal (default $GOAL_MS)
  --fps N          capture rate (default $FPS)
  --point N        starting operating point (default $POINT)
  --max-kbps N     the edge cap passed to the agent (--max-kbps; default none)
  --no-adapt       run a fixed point, no --latency-goal: the baseline to compare with
  --keep           keep the logs (their folder is printed)
Environment: AGENT_CLI replaces 'node dist/cli/main.js' for the agent only (to try another
build of it); LOG_LEVEL is passed on.
EOF
}

die() {
  echo "adaptive-rate-demo: $*" >&2
  exit 2
}

while (($#)); do
  case $1 in
    --high) HIGH=${2:?}; shift ;;
    --low) LOW=${2:?}; shift ;;
    --phases) PHASES=${2:?}; shift ;;
    --delay) DELAY_MS=${2:?}; shift ;;
    --goal) GOAL_MS=${2:?}; shift ;;
    --fps) FPS=${2:?}; shift ;;
    --point) POINT=${2:?}; shift ;;
    --max-kbps) MAX_KBPS=${2:?}; shift ;;
    --no-adapt) ADAPT=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
IFS=, read -r P1 P2 P3 <<<"$PHASES"
for n in "$P1" "$P2" "$P3" "$DELAY_MS" "$GOAL_MS" "$FPS" "$POINT" ${MAX_KBPS:+"$MAX_KBPS"}; do
  [[ $n =~ ^[0-9]+$ ]] || die "not a whole number: '$n' (see --help)"
done

# --- what it needs ---------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces and tc): run it with sudo"
for c in ip tc node; do
  command -v "$c" >/dev/null || die "needs '$c' (iproute2 for ip and tc, Node.js 20 for node)"
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLI=("node" "$ROOT/dist/cli/main.js")
[[ -f $ROOT/dist/cli/main.js ]] || die "no built CLI at dist/cli/main.js: run 'npm run build'"
read -r -a AGENT <<<"${AGENT_CLI:-node $ROOT/dist/cli/main.js}"
HELP=$("${AGENT[@]}" agent --help 2>/dev/null || true)
if ((ADAPT)) && [[ $HELP != *--latency-goal* ]]; then
  die "this build's agent has no --latency-goal (adaptive rate): rebuild, or pass --no-adapt"
fi

# --- the link --------------------------------------------------------------------------
NS=sf-rate-$$
VH=sfr$$h # root end (edge side)
VN=sfr$$n # namespace end (agent side)
WORK=$(mktemp -d /tmp/sf-rate.XXXXXX)
PIDS=()
SLEEP_PID=

stop() { # SIGTERM, up to 5 s to finish, then SIGKILL
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 20); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -9 "$1" 2>/dev/null || true
}

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  [[ -z $SLEEP_PID ]] || kill "$SLEEP_PID" 2>/dev/null || true
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[i]}"; done # agent first
  ip netns del "$NS" 2>/dev/null || true # takes its veth end, and so the pair, with it
  ip link del "$VH" 2>/dev/null || true
  if ((KEEP)); then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# a free 10.203.x.0/30
NET=
USED=" $(ip -4 -o addr show) $(ip -4 route) "
for x in $(seq 1 254); do
  if [[ $USED != *" 10.203.$x."* && $USED != *$'\n'"10.203.$x."* ]]; then
    NET=10.203.$x
    break
  fi
done
[[ -n $NET ]] || die "no free 10.203.x.0/30 subnet"
HOST_IP=$NET.1
NS_IP=$NET.2

ip netns add "$NS"
ip link add "$VH" type veth peer name "$VN"
ip link set "$VN" netns "$NS"
ip addr add "$HOST_IP/30" dev "$VH"
ip link set "$VH" up
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip addr add "$NS_IP/30" dev "$VN"
ip netns exec "$NS" ip link set "$VN" up

if ip netns exec "$NS" tc qdisc add dev "$VN" root netem delay 1ms 2>/dev/null; then
  SHAPER=netem
  tc qdisc replace dev "$VH" root netem delay "${DELAY_MS}ms" limit 100000 # downlink
else
  SHAPER=tbf
  echo "note: this kernel has no netem: the uplink is shaped with tbf (rate only, no delay)"
fi

shape() { # uplink rate
  if [[ $SHAPER == netem ]]; then
    ip netns exec "$NS" tc qdisc replace dev "$VN" root netem rate "$1" delay "${DELAY_MS}ms" limit 100000
  else
    ip netns exec "$NS" tc qdisc replace dev "$VN" root tbf rate "$1" burst 4kb latency 10s
  fi
}
now() { echo "${EPOCHREALTIME/./}" | cut -c1-13; } # Unix ms

# --- edge and agent --------------------------------------------------------------------
"${CLI[@]}" edge --model aecnn-cifar10 --host "$HOST_IP" --port "$PORT" --no-ws --no-metrics \
  >"$WORK/edge.out" 2>"$WORK/edge.err" &
PIDS+=($!)
for _ in $(seq 1 120); do
  grep -q "on mqtt://" "$WORK/edge.out" && break
  kill -0 "${PIDS[0]}" 2>/dev/null || { cat "$WORK/edge.err" >&2; die "the edge did not start"; }
  sleep 0.25
done
grep -q "on mqtt://" "$WORK/edge.out" || die "the edge did not come up in 30 s"

shape "$HIGH"
ARGS=(agent --device rate-demo --url "mqtt://$HOST_IP:$PORT" --codec aecnn --point "$POINT"
  --fps "$FPS" --loop)
if ((ADAPT)); then ARGS+=(--latency-goal "$GOAL_MS"); fi
if [[ -n $MAX_KBPS ]]; then ARGS+=(--max-kbps "$MAX_KBPS"); fi
# the agent's stdout (a line per result) is time-stamped as it comes; its log is pino JSON
mkfifo "$WORK/agent.fifo"
while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done <"$WORK/agent.fifo" >"$WORK/agent.out" &
PIDS+=($!)
ip netns exec "$NS" env LOG_LEVEL="${LOG_LEVEL:-info}" "${AGENT[@]}" "${ARGS[@]}" \
  >"$WORK/agent.fifo" 2>"$WORK/agent.err" &
AGENT_PID=$!
PIDS+=("$AGENT_PID")

DELAYS=
[[ $SHAPER == netem ]] && DELAYS=" (+${DELAY_MS} ms each way)"
echo "edge on $HOST_IP:$PORT; agent in namespace $NS ($NS_IP); uplink shaped with $SHAPER$DELAYS"
echo "agent: ${ARGS[*]}"
for _ in $(seq 1 240); do
  grep -q "^[0-9.]* frame " "$WORK/agent.out" 2>/dev/null && break
  kill -0 "$AGENT_PID" 2>/dev/null || { cat "$WORK/agent.err" >&2; die "the agent stopped"; }
  sleep 0.25
done
grep -q "^[0-9.]* frame " "$WORK/agent.out" || die "no result from the agent in 60 s"

# --- the phases ------------------------------------------------------------------------
: >"$WORK/phases"
phase() { # name rate seconds
  shape "$2"
  echo "$1 $2 $(now)" >>"$WORK/phases"
  echo "phase $1: uplink $2 for $3 s"
  sleep "$3" & # waited for, so that a signal ends the run at once
  SLEEP_PID=$!
  wait "$SLEEP_PID"
  SLEEP_PID=
}
phase 1 "$HIGH" "$P1"
phase 2 "$LOW" "$P2"
phase 3 "$HIGH" "$P3"
echo "end - $(now)" >>"$WORK/phases"
kill "$AGENT_PID" 2>/dev/null || true

# --- the report ------------------------------------------------------------------------
node - "$WORK" "$POINT" "$ADAPT" <<'EOF'
const fs = require('node:fs');
const [dir, start, adapt] = process.argv.slice(2);
const lines = (f) => fs.readFileSync(`${dir}/${f}`, 'utf8').split('\n').filter(Boolean);
const phases = lines('phases').map((l) => {
  const [name, rate, t] = l.split(' ');
  return { name, rate, t: Number(t) };
});
const t0 = phases[0].t;
const s = (t) => ((t - t0) / 1000).toFixed(1).padStart(6);
const changes = [];
for (const l of lines('agent.err')) {
  try {
    const j = JSON.parse(l);
    if (j.msg === 'operating point changed') changes.push({ time: j.time, ...(j.decision ?? j) });
  } catch {
    // not a log line
  }
}
const results = lines('agent.out').flatMap((l) => {
  const m = /^(\d+)\.(\d+) frame \S+ .* in ([\d.]+) ms$/.exec(l);
  return m ? [{ t: Number(m[1]) * 1000 + Number(m[2]) / 1000, ms: Number(m[3]) }] : [];
});
const events = [
  ...phases.slice(0, -1).map((p) => ({ t: p.t, text: `phase ${p.name}: uplink ${p.rate}` })),
  ...changes.map((c) => ({
    t: c.time,
    text:
      `point ${c.from} -> ${c.to}: ${c.reason} ` +
      `(bandwidth ${c.bandwidthKbps ?? '-'} kbit/s, rtt ${c.rttMs ?? '-'} ms, ` +
      `latency ${c.latencyMs ?? '-'} ms, backlog ${c.backlog})`,
  })),
].sort((a, b) => a.t - b.t);
console.log('\ntimeline (seconds since phase 1 began)');
for (const e of events) console.log(`${s(e.t)}  ${e.text}`);
if (!changes.length) console.log('        (no operating point change)');

const pointAt = (t) => changes.filter((c) => c.time <= t).reduce((_, c) => c.to, Number(start));
const pct = (xs, q) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length ? a[Math.min(a.length - 1, Math.floor((q / 100) * a.length))].toFixed(0) : '-';
};
console.log('\nphase  uplink    seconds  results/s  point (share of the phase)   latency p50 / p90 ms');
for (let i = 0; i + 1 < phases.length; i++) {
  const [a, b] = [phases[i].t, phases[i + 1].t];
  const share = new Map();
  const cuts = [a, ...changes.map((c) => c.time).filter((t) => t > a && t < b), b];
  for (let k = 0; k + 1 < cuts.length; k++) {
    const p = pointAt(cuts[k]);
    share.set(p, (share.get(p) ?? 0) + cuts[k + 1] - cuts[k]);
  }
  const pts = [...share].map(([p, d]) => `${p} (${Math.round((100 * d) / (b - a))}%)`).join(', ');
  const r = results.filter((x) => x.t >= a && x.t < b).map((x) => x.ms);
  console.log(
    `${phases[i].name.padEnd(6)} ${phases[i].rate.padEnd(9)} ${((b - a) / 1000).toFixed(0).padStart(7)}  ` +
      `${(r.length / ((b - a) / 1000)).toFixed(1).padStart(9)}  ${pts.padEnd(28)} ${pct(r, 50).padStart(7)} / ${pct(r, 90)}`,
  );
}
if (adapt === '1') {
  const [, low, high] = phases;
  const down = changes.find((c) => c.time >= low.t && c.time < high.t && c.to < c.from);
  const up = changes.find((c) => c.time >= high.t && pointAt(c.time) >= pointAt(low.t - 1));
  console.log(
    `\n${down ? `down ${((down.time - low.t) / 1000).toFixed(1)} s after the drop` : 'no step down after the drop'}; ` +
      `${up ? `back at point ${up.to} ${((up.time - high.t) / 1000).toFixed(1)} s after the recovery` : 'not back up by the end'}`,
  );
  process.exitCode = down && up ? 0 : 1;
}
EOF
