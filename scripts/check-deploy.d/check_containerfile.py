"""Checks deploy/Containerfile against the workspace, since no image can be built or pulled here.

    python check_containerfile.py --containerfile deploy/Containerfile --root .

What it checks: the builder's Rust version is the toolchain pinned in rust-toolchain.toml; the
build is locked and release and names the package whose binary is `task-api`; every COPY source
of the build context exists and all workspace members are copied; the runtime stage runs as the
non-root user 65532 with `task-api` as entrypoint and `serve` as default command. Prints
`ok <check>` / `FAIL <check>: <why>` lines like the other checkers.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import tomllib


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        joined.append(current)
        current = ""
    result = []
    for item in joined:
        word, _, rest = item.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containerfile", type=pathlib.Path, required=True)
    parser.add_argument("--root", type=pathlib.Path, required=True)
    args = parser.parse_args()

    problems: list[str] = []
    steps = instructions(args.containerfile.read_text())
    arg_defaults = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            arg_defaults.setdefault(name, value)

    toolchain = tomllib.loads((args.root / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    rust = arg_defaults.get("RUST_VERSION", "")
    if not toolchain.startswith(rust + ".") and toolchain != rust:
        problems.append(f"RUST_VERSION {rust!r} is not the pinned toolchain {toolchain}")

    stages = [rest for word, rest in steps if word == "FROM"]
    if len(stages) < 2:
        problems.append("not a multi-stage build")

    runs = " ".join(rest for word, rest in steps if word == "RUN")
    build = re.search(r"cargo build ([^&;]*)", runs)
    if not build:
        problems.append("no `cargo build` step")
    else:
        flags = build.group(1).split()
        for flag in ("--release", "--locked"):
            if flag not in flags:
                problems.append(f"cargo build lacks {flag}")
        package = flags[flags.index("-p") + 1] if "-p" in flags else None
        binaries = {}
        for manifest in (args.root / "bins").glob("*/Cargo.toml"):
            data = tomllib.loads(manifest.read_text())
            for binary in data.get("bin", []):
                binaries[binary["name"]] = data["package"]["name"]
        if binaries.get("task-api") != package:
            problems.append(f"cargo build -p {package}, but the task-api binary is in package {binaries.get('task-api')}")

    workspace = tomllib.loads((args.root / "Cargo.toml").read_text())["workspace"]["members"]
    copied = set()
    for word, rest in steps:
        if word != "COPY" or "--from=" in rest:
            continue
        sources = [part for part in rest.split() if not part.startswith("--")][:-1]
        for source in sources:
            copied.add(source.rstrip("/"))
            if not (args.root / source).exists():
                problems.append(f"COPY source {source} does not exist in the build context")
    for member in workspace:
        top = member.split("/")[0]
        if top not in copied:
            problems.append(f"workspace member {member} is not copied (cargo needs every member)")
    for needed in ("Cargo.lock", "Cargo.toml"):
        if needed not in copied:
            problems.append(f"{needed} is not copied (a --locked build needs it)")

    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM"):]
    final_words = {word: rest for word, rest in final}
    if final_words.get("USER", "").split(":")[0] != "65532":
        problems.append(f"the runtime stage runs as {final_words.get('USER')!r}, not the non-root user 65532")
    try:
        entrypoint = json.loads(final_words.get("ENTRYPOINT", "null"))
        command = json.loads(final_words.get("CMD", "null"))
    except json.JSONDecodeError:
        entrypoint = command = None
        problems.append("ENTRYPOINT and CMD must use the exec (JSON) form")
    if not entrypoint or pathlib.PurePosixPath(entrypoint[0]).name != "task-api":
        problems.append(f"ENTRYPOINT {entrypoint!r} is not the task-api binary")
    if command != ["serve"]:
        problems.append(f"CMD {command!r} is not [\"serve\"]")

    if problems:
        print(f"FAIL containerfile {args.containerfile}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"    {problem}")
        return 1
    print(f"ok containerfile {args.containerfile}: locked multi-stage build of task-api, non-root runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
