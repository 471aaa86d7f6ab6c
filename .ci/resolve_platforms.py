"""CI: the install resolves on platforms CI does not run on (macOS arm64, Linux aarch64, Windows).

For each target platform, resolves from PyPI (needs the network; the tests never do):
  1. the build requirements of pyproject.toml's [build-system] (what `pip install .` installs
     before it runs setup.py): the oneDNN packages must drop out by their markers;
  2. the base install's runtime requirements ([project].dependencies);
  3. the same with the extras of the README's test command and `viz`.
Every package must come as a wheel for the target, except `promise` (a pure-Python sdist that
tensorflow-datasets depends on, built on the user's machine). Exits 1 when any resolution fails,
with the resolver's explanation.

The resolver is uv (`uv pip compile --python-platform`), not `pip install --dry-run --platform`:
pip evaluates dependencies' environment markers against the interpreter it runs in, so on this
Linux machine it demands tensorflow-datasets' `array_record; platform_system == "Linux"` for
Windows as well, and fails where a Windows user's pip succeeds.

    python .ci/resolve_platforms.py --uv /path/to/uv
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import tomllib

REPO = pathlib.Path(__file__).resolve().parent.parent
PYTHON = "3.11"  # requires-python's floor
# wheel platform tag -> (uv's --python-platform, extra environment)
TARGETS = {
    # jax's scipy dependency has no macOS 11 arm64 wheel (scipy's start at macOS 12), so
    # macOS 12 is the oldest macOS arm64 that installs jax from wheels at all.
    "macosx_12_0_arm64": ("aarch64-apple-darwin", {"MACOSX_DEPLOYMENT_TARGET": "12.0"}),
    "manylinux2014_aarch64": ("aarch64-manylinux2014", {}),
    "win_amd64": ("x86_64-pc-windows-msvc", {}),
}
EXTRAS = ("test", "onednn", "viz")
SOURCE_OK = ("promise",)


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.strip().partition("==")
            pins[name] = version.split()[0]
    return pins


def _compile(uv: str, platform: str, env: dict, inputs: list[str]) -> subprocess.Popen:
    cmd = [uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate"]
    cmd += ["--python-platform", platform, "--python-version", PYTHON]
    cmd += ["--only-binary", ":all:"] + [arg for p in SOURCE_OK for arg in ("--no-binary", p)]
    cmd += inputs
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", default="uv", help="the uv executable")
    args = parser.parse_args()

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="genimg-resolve-"))
    build_reqs = tmp / "build-requirements.txt"
    build_reqs.write_text("\n".join(pyproject["build-system"]["requires"]) + "\n")
    extras = [arg for e in EXTRAS for arg in ("--extra", e)]
    jobs = {
        "build": ([str(build_reqs)]),
        "runtime": (["pyproject.toml"]),
        f"runtime+[{','.join(EXTRAS)}]": (["pyproject.toml", *extras]),
    }
    start = time.perf_counter()
    procs = {
        (tag, job): _compile(args.uv, platform, env, inputs)
        for tag, (platform, env) in TARGETS.items()
        for job, inputs in jobs.items()
    }
    failed = 0
    for (tag, job), proc in procs.items():
        out, err = proc.communicate()
        if proc.returncode != 0:
            failed += 1
            print(f"FAIL {tag} {job}:\n{err.strip()}", file=sys.stderr)
            continue
        pins = _pins(out)
        if job == "build":
            bad = [n for n in pins if n.startswith("onednn") or n == "jaxlib"]
            if bad:
                failed += 1
                print(f"FAIL {tag} build: pulls {bad} (no wheels there)", file=sys.stderr)
                continue
            detail = ", ".join(f"{n} {v}" for n, v in sorted(pins.items()))
        else:
            detail = f"{len(pins)} packages, jax {pins.get('jax')}, jaxlib {pins.get('jaxlib')}"
        print(f"ok   {tag:22s} {job:28s} {detail}")
    print(
        f"resolved {len(procs)} installs for Python {PYTHON} in {time.perf_counter() - start:.1f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
