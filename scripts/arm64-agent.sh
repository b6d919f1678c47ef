#!/usr/bin/env bash
# Runs the device agent as a real arm64 program: Debian's arm64 Node.js, the arm64 builds of
# onnxruntime-node and sharp, executed by qemu-user (qemu-aarch64 -L <sysroot>, no binfmt
# needed) against an x86 edge on loopback. Checks that every frame got a result, proves the
# emulated process is arm64 (process.arch, uname(2) machine, ELF machine of every native
# module it mapped) and prints the agent's head (encoder) ms per frame, emulated and native.
#
#   scripts/arm64-agent.sh [--frames N] [--models all|NAME[,NAME...]] [--point P]
#                          [--codec C] [--engine E] [--fps F] [--no-native]
#                          [--prepare-only] [--json]
#
# --models: zoo bundle names (models/zoo/*/manifest.json); default resnet9w05-cifar10.
# --codec:  codec for backbone bundles (default split-q); a learned codec bundle always
#           runs its own codec. --point: operating point (default 0).
# --engine: the agent's head engine (default onnx; tfjs-wasm where the agent has --engine).
#           onnx: the arm64 onnxruntime binding must be what ran; tfjs-*: onnxruntime must
#           not be loaded at all, and the agent must not have fallen back.
# --json:   end with one JSON line {prepare, runs:[...], ok}.
#
# Everything it fetches lives in .cache/arm64/ (git-, eslint- and prettier-ignored, like
# the rest of .cache/; or $ARM64_DIR), cached:
#   apt/      a private apt state (Debian $ARM64_SUITE arm64 index + .debs; the host's apt
#             configuration and dpkg are not touched)
#   sysroot/  nodejs and its dependency closure (plus coreutils), dpkg-deb -x'ed
#   npm/      npm pack of the arm64 sharp packages the lockfile pins (integrity checked)
#   app/      node_modules: links to the repo's packages, sharp + its arm64 builds added
# Needs: qemu-aarch64 (Debian: qemu-user), apt-get, dpkg-deb, npm, flock, and the built
# dist/ (npm run build). Exit 0: all checks passed; 1: a check failed; 3: the arm64
# environment could not be prepared (no qemu, no network, ...).
# The JavaScript passed to node -e is single-quoted on purpose (its ${...} are JS's).
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=${ARM64_DIR:-$ROOT/.cache/arm64}
SUITE=${ARM64_SUITE:-trixie}
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
HOST_NODE=${HOST_NODE:-node}

frames=20
models=resnet9w05-cifar10
codec=split-q
point=0
engine=onnx
fps=0
native=1
prepare_only=0
json=0
while [ $# -gt 0 ]; do
  case $1 in
    --frames) frames=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --codec) codec=$2; shift 2 ;;
    --point) point=$2; shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --fps) fps=$2; shift 2 ;;
    --no-native) native=0; shift ;;
    --prepare-only) prepare_only=1; shift ;;
    --json) json=1; shift ;;
    -h | --help) sed -n '2,/^# environment/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "$*" >&2; }
unprepared() { say "arm64: cannot prepare: $*"; exit 3; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

command -v "$QEMU" >/dev/null 2>&1 || unprepared "$QEMU not found (Debian: apt-get install qemu-user)"
for c in apt-get dpkg-deb npm flock "$HOST_NODE"; do
  command -v "$c" >/dev/null 2>&1 || unprepared "$c not found"
done
[ -f "$ROOT/dist/cli/main.js" ] || unprepared "dist/ is not built (npm run build)"
if [ -r /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  say "arm64: note: binfmt_misc has qemu-aarch64 registered; this script calls $QEMU explicitly anyway"
fi

mkdir -p "$A"
exec 9>"$A/lock"
flock -w 900 9 || unprepared "another run holds $A/lock"

# ---------------------------------------------------------------- sysroot (Debian arm64)
PKGS=(nodejs coreutils)
APT_OPTS=(
  -o APT::Architecture=arm64 -o APT::Architectures::=arm64
  -o "Dir::State::status=$A/apt/status" -o "Dir::State::Lists=$A/apt/lists"
  -o "Dir::Cache::archives=$A/apt/archives" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
  -o "Dir::Etc::SourceList=$A/apt/sources.list" -o "Dir::Etc::SourceParts=$A/apt/sources.list.d"
  -o "Dir::Etc::Preferences=$A/apt/preferences" -o "Dir::Etc::PreferencesParts=$A/apt/preferences.d"
  -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o Acquire::Retries=3
)
t_prep=$(now)
sysroot_s=0
stamp="suite=$SUITE mirror=$MIRROR pkgs=${PKGS[*]} layout=2"
if [ "$(cat "$A/sysroot.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$A/sysroot/usr/bin/node" ]; then
  t=$(now)
  say "arm64: building the sysroot (Debian $SUITE arm64: ${PKGS[*]} and their dependencies)"
  rm -rf "$A/apt" "$A/sysroot" "$A/sysroot.tmp" "$A/sysroot.stamp"
  mkdir -p "$A/apt/lists/partial" "$A/apt/archives/partial" "$A/apt/sources.list.d" \
    "$A/apt/preferences.d"
  : >"$A/apt/status"
  echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" \
    >"$A/apt/sources.list"
  apt-get "${APT_OPTS[@]}" -qq update >"$A/apt.log" 2>&1 \
    || unprepared "apt-get update of Debian $SUITE arm64 failed (see $A/apt.log)"
  apt-get "${APT_OPTS[@]}" -qq -y --download-only --no-install-recommends install "${PKGS[@]}" \
    >>"$A/apt.log" 2>&1 || unprepared "apt-get download failed (see $A/apt.log)"
  mkdir -p "$A/sysroot.tmp"
  for deb in "$A"/apt/archives/*.deb; do dpkg-deb -x "$deb" "$A/sysroot.tmp"; done
  # merged /usr: the dynamic loader is looked up as /lib/ld-linux-aarch64.so.1
  for d in lib bin sbin; do [ -e "$A/sysroot.tmp/$d" ] || ln -s "usr/$d" "$A/sysroot.tmp/$d"; done
  mv "$A/sysroot.tmp" "$A/sysroot"
  echo "$stamp" >"$A/sysroot.stamp"
  sysroot_s=$(secs "$t" "$(now)")
  say "arm64: sysroot ready in ${sysroot_s} s ($(du -sh "$A/sysroot" | cut -f1))"
fi
SYS=$A/sysroot
# qemu 7.2 shows an arm64 program the host's x86 /proc/cpuinfo, and onnxruntime's cpuinfo
# library crashes (SIGSEGV) on it. qemu -L looks a path up in the sysroot first, so an
# arm64-format cpuinfo there (one entry per CPU the host lists as possible) is what
# the program reads. The CPU described is a Cortex-A72 (a Raspberry Pi 4's).
mkdir -p "$SYS/proc"
cpus=$(cat /sys/devices/system/cpu/possible 2>/dev/null || echo "0-$(($(nproc --all) - 1))")
: >"$SYS/proc/cpuinfo.new"
IFS=, read -r -a ranges <<<"$cpus"
for r in "${ranges[@]}"; do
  lo=${r%-*}
  hi=${r#*-}
  for ((i = lo; i <= hi; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i" \
      >>"$SYS/proc/cpuinfo.new"
  done
done
mv "$SYS/proc/cpuinfo.new" "$SYS/proc/cpuinfo"

# ---------------------------------------------------------------- arm64 node_modules
# The repo's node_modules is not touched. app/node_modules links to its packages, except
# sharp, which is copied so that it finds the arm64 builds added beside it.
# onnxruntime-node already ships bin/napi-v*/linux/arm64. msgpackr-extract is left out:
# its 3.0.4 linux-arm64 package has musl builds only, so on glibc msgpackr uses its JS path.
npm_s=0
lockhash=$(cat "$ROOT/package-lock.json" "$ROOT/node_modules/.package-lock.json" 2>/dev/null \
  | sha256sum | cut -c1-16)
if [ "$(cat "$A/app.stamp" 2>/dev/null)" != "$lockhash" ] || [ ! -d "$A/app/node_modules" ]; then
  t=$(now)
  say "arm64: assembling the arm64 node_modules"
  [ -d "$ROOT/node_modules/sharp" ] || unprepared "node_modules/sharp missing (npm ci)"
  wanted_txt=$("$HOST_NODE" -e '
    const l = require(process.argv[1]).packages;
    const sharp = l["node_modules/sharp"];
    for (const p of ["@img/sharp-linux-arm64", "@img/sharp-libvips-linux-arm64"]) {
      const e = l["node_modules/" + p];
      const v = e ? e.version : sharp.optionalDependencies[p];
      console.log(`${p}@${v} ${e ? e.integrity : "-"}`);
    }' "$ROOT/package-lock.json") || unprepared "sharp's arm64 packages not found in package-lock.json"
  mapfile -t wanted <<<"$wanted_txt"
  mkdir -p "$A/npm"
  rm -rf "$A/app"
  mkdir -p "$A/app/node_modules"
  for e in "$ROOT"/node_modules/* "$ROOT"/node_modules/.bin; do
    n=$(basename "$e")
    if [[ $n == @* ]]; then
      mkdir -p "$A/app/node_modules/$n"
      for s in "$e"/*; do ln -s "$s" "$A/app/node_modules/$n/$(basename "$s")"; done
    else
      ln -s "$e" "$A/app/node_modules/$n"
    fi
  done
  rm "$A/app/node_modules/sharp"
  cp -r "$ROOT/node_modules/sharp" "$A/app/node_modules/sharp"
  for w in "${wanted[@]}"; do
    spec=${w% *}
    integrity=${w#* }
    name=${spec%@*}
    tgz="$A/npm/$(echo "${name#@}" | tr / -)-${spec##*@}.tgz"
    if [ ! -f "$tgz" ]; then
      (cd "$A/npm" && npm pack --silent "$spec" >/dev/null 2>>"$A/npm.log") \
        || unprepared "npm pack $spec failed (see $A/npm.log)"
    fi
    if [ "$integrity" != "-" ]; then
      got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
      if [ "$got" != "$integrity" ]; then
        rm -f "$tgz"
        unprepared "$spec: integrity $got is not the lockfile's $integrity"
      fi
    fi
    mkdir -p "$A/app/node_modules/$name"
    tar -xzf "$tgz" -C "$A/app/node_modules/$name" --strip-components=1
  done
  echo "$lockhash" >"$A/app.stamp"
  npm_s=$(secs "$t" "$(now)")
fi

# Reports, on exit of the emulated node, what it is, which native code it mapped and the
# sizes of the WebAssembly modules it instantiated (the tfjs wasm backend is one).
cat >"$A/probe.cjs" <<'EOF'
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const out = process.env.SPLITFLEET_ARM64_PROBE;
function elfMachine(p) {
  try {
    const b = Buffer.alloc(20);
    const fd = fs.openSync(p, 'r');
    fs.readSync(fd, b, 0, 20, 0);
    fs.closeSync(fd);
    const m = b.readUInt16LE(18);
    return m === 183 ? 'aarch64' : m === 62 ? 'x86-64' : `elf-machine-${m}`;
  } catch (e) {
    return `unreadable: ${e.message}`;
  }
}
const wasm = [];
const size = (src) => (src && typeof src.byteLength === 'number' ? src.byteLength : -1);
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = function (src, ...rest) {
  wasm.push(size(src));
  return instantiate.call(this, src, ...rest);
};
const compile = WebAssembly.compile;
WebAssembly.compile = function (src, ...rest) {
  wasm.push(size(src));
  return compile.call(this, src, ...rest);
};
WebAssembly.Module = new Proxy(WebAssembly.Module, {
  construct(target, args) {
    wasm.push(size(args[0]));
    return Reflect.construct(target, args);
  },
});
if (out) {
  process.on('exit', () => {
    const maps = fs.readFileSync('/proc/self/maps', 'utf8').split('\n');
    const paths = [...new Set(maps.map((l) => l.trim().split(/\s+/)[5]).filter(Boolean))];
    const native = paths
      .filter((p) => /\.node$|libonnxruntime|libvips/.test(p))
      .map((p) => ({ path: p, elf: elfMachine(p) }));
    fs.writeFileSync(
      out,
      JSON.stringify({
        arch: process.arch,
        machine: os.machine(),
        node: process.version,
        execPath: process.execPath,
        execElf: elfMachine(process.execPath),
        native,
        wasm,
      }),
    );
  });
}
EOF
prepare_s=$(secs "$t_prep" "$(now)")
flock -u 9
say "arm64: prepared in ${prepare_s} s (sysroot build ${sysroot_s} s, node_modules ${npm_s} s; 0 = cached)"
uname_m=$("$QEMU" -L "$SYS" "$SYS/usr/bin/uname" -m)
say "arm64: Debian's arm64 uname -m under $QEMU: $uname_m"
if [ "$prepare_only" = 1 ]; then
  [ "$json" = 1 ] && printf '{"prepare":{"s":%s,"sysrootS":%s,"nodeModulesS":%s}}\n' \
    "$prepare_s" "$sysroot_s" "$npm_s"
  exit 0
fi

# ---------------------------------------------------------------- the run
# which bundles: name, kind, codec
if [ "$models" = all ]; then
  models=$("$HOST_NODE" -e '
    const fs = require("fs"), p = require("path"), z = process.argv[1];
    console.log(fs.readdirSync(z).filter((d) => fs.existsSync(p.join(z, d, "manifest.json")))
      .map((d) => require(p.join(z, d, "manifest.json")).name).sort().join(","));' \
    "$ROOT/models/zoo")
fi
plan_txt=$("$HOST_NODE" -e '
  const fs = require("fs"), p = require("path");
  const [z, list, codec] = process.argv.slice(1);
  const all = fs.readdirSync(z).filter((d) => fs.existsSync(p.join(z, d, "manifest.json")))
    .map((d) => require(p.join(z, d, "manifest.json")));
  for (const name of list.split(",")) {
    const ms = all.filter((m) => m.name === name).sort((a, b) => a.version - b.version);
    const m = ms[ms.length - 1];
    if (!m) { console.error(`no bundle ${name} in ${z}`); process.exit(1); }
    console.log(`${m.name} ${m.kind === "codec" ? m.codec.method : codec}`);
  }' "$ROOT/models/zoo" "$models" "$codec") || { say "arm64: bad --models"; exit 2; }
mapfile -t plan <<<"$plan_txt"
engine_args=()
agent_help=$(cd "$ROOT" && "$HOST_NODE" dist/cli/main.js agent --help)
if [[ $agent_help == *--engine* ]]; then
  engine_args=(--engine "$engine")
elif [ "$engine" != onnx ]; then
  say "arm64: this agent has no --engine flag (only onnx)"
  exit 2
fi
RUN=$(mktemp -d "$A/run.XXXXXX")
edge_pid=
fail=1
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ -n "$edge_pid" ]; then
    kill "$edge_pid" 2>/dev/null || true
    wait "$edge_pid" 2>/dev/null || true
  fi
  if [ "$fail" = 0 ]; then rm -rf "$RUN"; else say "arm64: logs kept in $RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# This run's copy of dist/: under app/ its imports find app/node_modules; package.json and
# models/ make it the project root (core/paths.ts).
mkdir -p "$RUN/app"
cp -r "$ROOT/dist" "$RUN/app/dist"
cp "$ROOT/package.json" "$RUN/app/package.json"
ln -s "$ROOT/models" "$RUN/app/models"
ln -s "$A/app/node_modules" "$RUN/app/node_modules"

edge_models=()
for p in "${plan[@]}"; do edge_models+=("${p% *}"); done

say "arm64: starting the edge natively on this $(uname -m) host (models: ${edge_models[*]})"
(cd "$ROOT" && exec "$HOST_NODE" dist/cli/main.js edge --host 127.0.0.1 --port 0 --no-ws \
  --no-metrics --workers 1 --model "${edge_models[@]}") >"$RUN/edge.log" 2>&1 &
edge_pid=$!
url=
for _ in $(seq 1 240); do
  url=$(grep -o 'on mqtt://127\.0\.0\.1:[0-9]*' "$RUN/edge.log" 2>/dev/null | head -1 | cut -c4-) || true
  [ -n "$url" ] && break
  kill -0 "$edge_pid" 2>/dev/null || break
  sleep 0.25
done
if [ -z "$url" ]; then
  say "arm64: the edge did not come up:"
  cat "$RUN/edge.log" >&2
  exit 1
fi
say "arm64: edge on $url"
fail=0

results=()
for p in "${plan[@]}"; do
  model=${p% *}
  c=${p#* }
  args=(agent --url "$url" --model "$model" --codec "$c" --point "$point" --frames "$frames"
    --fps "$fps" --json "${engine_args[@]}")
  native_json=null
  native_s=null
  if [ "$native" = 1 ]; then
    t=$(now)
    if ! (cd "$ROOT" && "$HOST_NODE" dist/cli/main.js "${args[@]}" --device native) \
      >"$RUN/native.out" 2>"$RUN/native.err"; then
      say "arm64: the native agent failed ($model/$c):"
      tail -20 "$RUN/native.err" >&2
      fail=1
    fi
    native_s=$(secs "$t" "$(now)")
    native_json=$(tail -1 "$RUN/native.out")
    [ -n "$native_json" ] || native_json=null
  fi
  t=$(now)
  rm -f "$RUN/probe.json"
  if ! (cd "$RUN/app" && SPLITFLEET_ARM64_PROBE="$RUN/probe.json" "$QEMU" -L "$SYS" \
    "$SYS/usr/bin/node" --require "$A/probe.cjs" dist/cli/main.js "${args[@]}" \
    --device arm64-qemu) >"$RUN/arm64.out" 2>"$RUN/arm64.err"; then
    say "arm64: the emulated agent failed ($model/$c):"
    tail -20 "$RUN/arm64.err" >&2
    fail=1
  fi
  arm_s=$(secs "$t" "$(now)")
  arm_json=$(tail -1 "$RUN/arm64.out")
  [ -n "$arm_json" ] || arm_json=null
  probe=$(cat "$RUN/probe.json" 2>/dev/null || echo null)
  if ! kill -0 "$edge_pid" 2>/dev/null; then
    say "arm64: the edge is gone:"
    tail -20 "$RUN/edge.log" >&2
    fail=1
  fi
  line=$("$HOST_NODE" -e '
    const [model, codec, point, frames, nat, natS, arm, armS, probe, engine, errLog] = process.argv.slice(1);
    const parse = (s) => { try { return JSON.parse(s); } catch { return null; } };
    const n = parse(nat), a = parse(arm), pr = parse(probe);
    const problems = [];
    const want = Number(frames);
    const check = (s, who) => {
      if (!s) return problems.push(`${who}: no summary`);
      if (s.sent !== want) problems.push(`${who}: sent ${s.sent} of ${want}`);
      if (s.results !== want) problems.push(`${who}: ${s.results} results for ${want} frames`);
      if (s.errors || s.lost || s.skipped) problems.push(`${who}: errors ${s.errors}, lost ${s.lost}, skipped ${s.skipped}`);
    };
    check(a, "arm64");
    if (natS !== "null") check(n, "native");
    if (!pr) problems.push("arm64: no probe report");
    else {
      if (pr.arch !== "arm64") problems.push(`arm64: process.arch is ${pr.arch}`);
      if (pr.machine !== "aarch64") problems.push(`arm64: uname machine is ${pr.machine}`);
      if (pr.execElf !== "aarch64") problems.push(`arm64: node binary is ${pr.execElf}`);
      const ort = pr.native.some((x) => /onnxruntime_binding\.node$/.test(x.path) && x.elf === "aarch64");
      if (engine === "onnx" && !ort) problems.push("arm64: no aarch64 onnxruntime binding mapped");
      // onnxruntime is always loaded (the pipeline imports it); tfjs-wasm must compile its backend
      if (engine === "tfjs-wasm" && !(pr.wasm || []).some((n) => n > 100000))
        problems.push("arm64: tfjs-wasm asked for, but no wasm backend was compiled");
      const fell = errLog.split("\n").filter((l) => /falling back|running it on|is not available/.test(l));
      if (fell.length) problems.push(`arm64: engine fallback: ${fell.join(" | ").slice(0, 600)}`);
      const other = pr.native.filter((x) => x.elf !== "aarch64");
      if (other.length) problems.push(`arm64: non-arm64 native code: ${other.map((x) => x.path).join(", ")}`);
    }
    const pick = (s, secs) => s && {
      headMsP50: s.headMsP50, wallMsPerFrame: s.fps ? Math.round(100000 / s.fps) / 100 : null,
      latencyP50: s.latencyMs.p50, bytesPerFrame: s.bytesPerFrame, accuracy: s.accuracy,
      sent: s.sent, results: s.results, runS: Number(secs),
    };
    console.log(JSON.stringify({
      model, codec, engine, point: Number(point), frames: want,
      arm64: pick(a, armS), native: pick(n, natS),
      probe: pr && { arch: pr.arch, machine: pr.machine, node: pr.node, execElf: pr.execElf, wasm: pr.wasm,
        native: pr.native.map((x) => `${x.path.replace(/^.*node_modules\//, "")} (${x.elf})`) },
      ok: problems.length === 0, problems,
    }));' "$model" "$c" "$point" "$frames" "$native_json" "$native_s" "$arm_json" "$arm_s" "$probe" "$engine" \
    "$(tail -200 "$RUN/arm64.err" | cut -c1-400)")
  results+=("$line")
  "$HOST_NODE" -e '
    const r = JSON.parse(process.argv[1]);
    const f = (s, k) => (s ? String(s[k]) : "-");
    console.log(`\n== ${r.model} (codec ${r.codec}, point ${r.point}, engine ${r.engine}), ${r.frames} frames of the shipped sample`);
    if (r.probe) {
      console.log(`  emulated process: process.arch=${r.probe.arch}, uname(2) machine=${r.probe.machine}, node ${r.probe.node} (ELF ${r.probe.execElf})`);
      console.log(`  native code it mapped: ${r.probe.native.join(", ")}`);
      if (r.probe.wasm.length) console.log(`  WebAssembly modules it compiled (bytes): ${r.probe.wasm.join(", ")}`);
    }
    const row = (label, s) => console.log(`  ${label.padEnd(34)} ${f(s, "results").padStart(4)}/${r.frames}  head ${f(s, "headMsP50").padStart(9)} ms  wall ${f(s, "wallMsPerFrame").padStart(9)} ms  run ${f(s, "runS").padStart(6)} s`);
    console.log(`  ${"".padEnd(34)} results  head p50/frame      agent wall/frame   agent process`);
    row("ARM64, EMULATED (qemu-user)", r.arm64);
    row(`NATIVE ${process.arch} (this host)`, r.native);
    console.log(r.ok ? "  ok" : `  FAILED: ${r.problems.join("; ")}`);' "$line"
  if ! "$HOST_NODE" -e 'process.exit(JSON.parse(process.argv[1]).ok ? 0 : 1)' "$line"; then
    fail=1
    say "arm64: last lines of the emulated agent's stderr:"
    tail -5 "$RUN/arm64.err" >&2
  fi
done

echo
echo "head = the agent's headMsP50 (head inference per frame on --engine $engine, median); wall ="
echo "1000/fps of the agent's own run (decode, head, codec, MQTT; --fps $fps). Emulated figures"
echo "measure qemu-user on this host, not an arm64 CPU."
if [ "$json" = 1 ]; then
  printf '{"prepare":{"s":%s,"sysrootS":%s,"nodeModulesS":%s},"uname":"%s","runs":[%s],"ok":%s}\n' \
    "$prepare_s" "$sysroot_s" "$npm_s" "$uname_m" "$(IFS=,; echo "${results[*]}")" \
    "$([ "$fail" = 0 ] && echo true || echo false)"
fi
exit "$fail"
