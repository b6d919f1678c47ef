/**
 * The device agent as a real arm64 program: scripts/arm64-agent.sh runs Debian's arm64
 * Node.js with the arm64 builds of onnxruntime-node and sharp under qemu-user against an
 * edge on this host, for a few frames of the shipped sample.
 *
 * The sysroot is prepared first (cached in .cache/arm64/; about 9 MB of apt index and 40 MB
 * of packages on the first run). Where it cannot be prepared (no qemu-aarch64, no network,
 * dist/ not built) the test is skipped and its title says why; where it can, every frame
 * must get a result and the emulated process must be arm64 through and through.
 * SPLITFLEET_ARM64=0 skips it (it is one of the slowest tests: about a minute).
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = 'scripts/arm64-agent.sh';
const FRAMES = 3;
/** Below AVA's 180 s: a run that hangs fails here, with its output, not by AVA's timeout. */
const RUN_LIMIT_MS = 170_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run the script in its own process group; on timeout the whole group is stopped (its
 * EXIT trap stops the edge it started). */
function runScript(args: string[], limitMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT, ...args], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
    }, limitMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

function lastJson(stdout: string): unknown {
  const line = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line);
}

interface Figures {
  headMsP50: number;
  wallMsPerFrame: number | null;
  sent: number;
  results: number;
  runS: number;
}
interface ArmRun {
  model: string;
  codec: string;
  frames: number;
  arm64: Figures | null;
  probe: { arch: string; machine: string; node: string; execElf: string; native: string[] };
  ok: boolean;
  problems: string[];
}
interface Report {
  prepare: { s: number; sysrootS: number; nodeModulesS: number };
  uname: string;
  runs: ArmRun[];
  ok: boolean;
}

// Prepare (or find cached) before any test is declared, so that an environment that
// cannot run it is a skip with the reason, not a failure.
const EXIT_UNPREPARED = 3;
let skipReason: string | null = null;
let prepareFailure: Run | null = null;
let prepared = '';
if (process.env.SPLITFLEET_ARM64 === '0') {
  skipReason = 'SPLITFLEET_ARM64=0';
} else if (process.platform !== 'linux' || process.arch !== 'x64') {
  skipReason = `the check emulates arm64 on an x86-64 Linux host; this is ${process.platform}/${process.arch}`;
} else {
  const prep = await runScript(['--prepare-only', '--json'], RUN_LIMIT_MS);
  if (prep.code === EXIT_UNPREPARED) {
    skipReason =
      prep.stderr
        .split('\n')
        .find((l) => l.startsWith('arm64: cannot prepare'))
        ?.replace(/^arm64: /, '') ?? 'cannot prepare the arm64 environment';
  } else if (prep.code !== 0) {
    prepareFailure = prep;
  } else {
    prepared = prep.stdout.trim().split('\n').pop() ?? '';
  }
}

// AVA wants every test declared in the same tick: all of them come after the await.
test('scripts/arm64-agent.sh is shellcheck-clean', (t) => {
  const r = spawnSync('shellcheck', ['--severity=style', SCRIPT], { cwd: ROOT, encoding: 'utf8' });
  if (r.error) {
    t.log(`skipped: shellcheck does not run here (${r.error.message})`);
    return t.pass();
  }
  t.is(r.status, 0, r.stdout + r.stderr);
});

if (skipReason) {
  test.skip(`device agent on arm64 under qemu-user (skipped: ${skipReason})`, () => {});
} else if (prepareFailure) {
  const prep = prepareFailure;
  test('the arm64 sysroot prepares', (t) => {
    t.fail(
      `${SCRIPT} --prepare-only exited ${prep.code}${prep.timedOut ? ' (timed out)' : ''}:\n${prep.stderr}`,
    );
  });
} else {
  test.serial(
    `device agent on arm64 (Debian node under qemu-user, ONNX head) sends ${FRAMES} frames and gets every result`,
    async (t) => {
      const run = await runScript(
        ['--frames', String(FRAMES), '--no-native', '--json'],
        RUN_LIMIT_MS,
      );
      t.false(run.timedOut, `${SCRIPT} ran past ${RUN_LIMIT_MS} ms:\n${run.stderr}\n${run.stdout}`);
      t.is(run.code, 0, `${SCRIPT} exited ${run.code}:\n${run.stderr}\n${run.stdout}`);
      const report = lastJson(run.stdout) as Report;
      t.true(report.ok);
      t.is(report.uname, 'aarch64');
      t.is(report.runs.length, 1);
      const r = report.runs[0]!;
      t.deepEqual(r.problems, []);
      t.is(r.arm64?.sent, FRAMES);
      t.is(r.arm64?.results, FRAMES);
      t.true((r.arm64?.headMsP50 ?? 0) > 0);
      t.is(r.probe.arch, 'arm64');
      t.is(r.probe.machine, 'aarch64');
      t.is(r.probe.execElf, 'aarch64');
      t.true(
        r.probe.native.some((n) => /onnxruntime_binding\.node \(aarch64\)$/.test(n)),
        r.probe.native.join(', '),
      );
      t.true(
        r.probe.native.every((n) => n.endsWith('(aarch64)')),
        r.probe.native.join(', '),
      );
      t.log(`prepare (0 s = cached): ${prepared}`);
      t.log(
        `${r.model}/${r.codec}: arm64 under qemu-user (emulated, not an arm64 CPU): head ` +
          `${r.arm64?.headMsP50} ms/frame (p50), agent wall ${r.arm64?.wallMsPerFrame} ms/frame, ` +
          `agent process ${r.arm64?.runS} s; node ${r.probe.node}`,
      );
    },
  );
}
