#!/usr/bin/env python3
"""Compare `kiln plan` with upstream `nixpacks plan`, side by side.

Runs both over every example folder (upstream's `examples/` by default),
turning each example's `test.env` into the same flags for both tools
(`ENVS="A=1, B=2"` -> `--env A=1 --env B=2`, `CUSTOM_START_CMD` ->
`--start-cmd`, `CUSTOM_PKGS` -> `--pkgs`), drops `buildImage`, and prints a
diff for each mismatch and `N of M equal` at the end. Examples upstream
assigns to a provider kiln does not have are left out of the count.

Usage: parity.py [--nixpacks BIN] [--kiln BIN] [--only NAME] [EXAMPLES_DIR]
"""

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import time
import tomllib

# Static assets whose text kiln writes itself instead of copying upstream's.
OWN_ASSETS = {"Caddyfile", "nginx.template.conf", "php-fpm.conf", "get-gleam.sh"}

KILN_PROVIDERS = {
    "c#", "clojure", "cobol", "crystal", "dart", "deno", "elixir", "f#", "gleam", "go", "haskell",
    "java", "lunatic", "node", "php", "python", "ruby", "rust", "scala", "scheme", "staticfile",
    "swift", "zig", "",
}


def read_test_env(folder):
    """The flags an example's test.env stands for. Read as text, never run."""
    path = os.path.join(folder, "test.env")
    flags = []
    if not os.path.isfile(path):
        return flags
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = re.match(r'^([A-Z_]+)=(.*)$', line.strip())
            if not match:
                continue
            key, value = match.group(1), match.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if key == "ENVS":
                flags += [arg for item in value.split(", ") for arg in ("--env", item)]
            elif key == "CUSTOM_START_CMD":
                flags += ["--start-cmd", value]
            elif key == "CUSTOM_PKGS":
                flags += ["--pkgs", value]
    return flags


TIMES = {}


def run(cmd):
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    TIMES.setdefault((os.path.basename(cmd[0]), cmd[1]), []).append(time.perf_counter() - start)
    return result.returncode, result.stdout, result.stderr


def print_times():
    """Wall time per process, plan and detect, both tools: a side-by-side check, not a benchmark."""
    for (tool, command), times in sorted(TIMES.items()):
        times = sorted(times)
        median = times[len(times) // 2] * 1000
        print(f"{tool} {command}: median {median:.1f} ms, max {times[-1] * 1000:.1f} ms over {len(times)} runs")


def normalized(text, drop_own_assets=False):
    is_toml = text.startswith("buildImage = ") or "\nbuildImage = " in text
    if is_toml and not drop_own_assets:
        return "\n".join(l for l in text.splitlines() if not l.startswith("buildImage = "))
    try:
        plan = tomllib.loads(text) if is_toml else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError):
        return text
    plan.pop("buildImage", None)
    assets = plan.get("staticAssets") or {}
    if drop_own_assets:
        for name in list(assets):
            if name in OWN_ASSETS or name.startswith("scripts/"):
                del assets[name]
    return json.dumps(plan, indent=2, ensure_ascii=False)


def write_goldens(args):
    """Upstream's plans for our own fixture apps, for the golden tests."""
    os.makedirs(args.write_goldens, exist_ok=True)
    for name in sorted(os.listdir(args.examples)):
        folder = os.path.join(args.examples, name)
        if not os.path.isdir(folder) or not name.startswith("plan-"):
            continue
        code, out, err = run([args.nixpacks, "plan", folder] + read_test_env(folder))
        if code != 0:
            print(f"{name}: upstream failed: {err.strip()}", file=sys.stderr)
            return 1
        with open(os.path.join(args.write_goldens, name + ".json"), "w", encoding="utf-8") as f:
            f.write(normalized(out, drop_own_assets=True) + "\n")
        print(f"wrote {name}.json")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nixpacks", default="/work/upstream-nixpacks/target/release/nixpacks")
    parser.add_argument("--kiln", default=os.path.join(os.path.dirname(__file__), "../../target/debug/kiln"))
    parser.add_argument("--only", help="compare only examples whose name contains this")
    parser.add_argument("--format", choices=["json", "toml"], default="json", help="plan format to compare")
    parser.add_argument("--times", action="store_true", help="print per-process wall times of both tools")
    parser.add_argument("--quiet", action="store_true", help="list mismatches without diffs")
    parser.add_argument("--write-goldens", metavar="DIR",
                        help="write upstream's normalized plan of each example to DIR/<name>.json instead of comparing")
    parser.add_argument("examples", nargs="?", default="/work/upstream-nixpacks/examples")
    args = parser.parse_args()

    if args.write_goldens:
        return write_goldens(args)

    equal, total, mismatched, assets_only = 0, 0, [], 0
    for name in sorted(os.listdir(args.examples)):
        folder = os.path.join(args.examples, name)
        if not os.path.isdir(folder) or (args.only and args.only not in name):
            continue
        flags = read_test_env(folder)
        code, detected, _ = run([args.nixpacks, "detect", folder] + flags)
        providers = [p.strip() for p in detected.strip().split(",")]
        if code == 0 and not all(p in KILN_PROVIDERS for p in providers):
            continue
        total += 1
        if args.times:
            run([args.kiln, "detect", folder] + flags)
        plan_flags = flags + ["--format", args.format]
        up_code, up_out, up_err = run([args.nixpacks, "plan", folder] + plan_flags)
        k_code, k_out, k_err = run([args.kiln, "plan", folder] + plan_flags)
        up = normalized(up_out) if up_code == 0 else f"exit {up_code}\n"
        kiln = normalized(k_out) if k_code == 0 else f"exit {k_code}\n"
        if up == kiln:
            equal += 1
            continue
        mismatched.append(name)
        if up_code == 0 and k_code == 0 and normalized(up_out, True) == normalized(k_out, True):
            assets_only += 1
        print(f"=== {name} ({', '.join(providers)}) differs")
        if not args.quiet:
            if k_code != 0:
                print(k_err.strip())
            diff = difflib.unified_diff(up.splitlines(), kiln.splitlines(), "nixpacks", "kiln", lineterm="", n=2)
            print("\n".join(diff))
    print(f"{equal} of {total} equal")
    print(f"{equal + assets_only} of {total} equal apart from static asset files kiln writes itself ({', '.join(sorted(OWN_ASSETS))}, scripts/*)")
    if mismatched:
        print("mismatched: " + " ".join(mismatched))
    if args.times:
        print_times()
    return 0 if equal == total else 1


if __name__ == "__main__":
    sys.exit(main())
