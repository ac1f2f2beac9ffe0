"""``bin/deliver``: one release, from the checkout to a smoke-tested deployment.

The pipeline's YAML only calls this, so a delivery runs the same on a laptop as in CI:

1. build the images (``Dockerfile`` targets) labelled with the version and commit;
2. push them, and read back their digests;
3. render the overlay with those digests pinned (a branch: ``k8s/overlays/staging`` in a
   namespace of its own; a tag: ``k8s/overlays/production``);
4. apply it;
5. wait for the release's migration Job and the API's rollout;
6. smoke-test the API: ``/readyz``, 200 priced coins as CSV, ``/version`` naming the commit.

Each step prints what it runs.  ``--dry-run`` prints every command and the rendered manifests
and runs nothing that changes anything (rendering only reads the checkout).  A step that
fails stops the delivery with one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import requests

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_NAMESPACE = "top-coins"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What a dry run shows where a digest would be read from the registry.
UNREAD_DIGEST = "sha256:" + "0" * 64
# Release tags: v1.2.0, v1.2.0-rc.1.
TAG = re.compile(r"v[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?")
WAIT_SECONDS = 600
SMOKE_SECONDS = 180
ROWS = 200


class DeliveryFailed(Exception):
    """One line saying which step failed and why."""


@dataclass(frozen=True)
class Release:
    """What is delivered where: a branch to staging, or a tag to production."""

    ref: str
    is_tag: bool
    commit: str
    registry: str

    @property
    def namespace(self) -> str:
        return PRODUCTION_NAMESPACE if self.is_tag else branch_namespace(self.ref)

    @property
    def overlay(self) -> Path:
        return ROOT / "k8s" / "overlays" / ("production" if self.is_tag else "staging")

    @property
    def targets(self) -> tuple[str, ...]:
        """Dockerfile targets: the fake providers only for staging."""
        return ("api", "scraper") if self.is_tag else ("api", "scraper", "fakeproviders")

    @property
    def version(self) -> str:
        return self.ref.removeprefix("v") if self.is_tag else f"0.0.0-{self.commit[:12]}"

    @property
    def name(self) -> str:
        """The release in a DNS label: it names the release's migration Job."""
        return dns_label(self.version if self.is_tag else self.commit[:12], 40)

    @property
    def migration_job(self) -> str:
        return f"top-coins-migrate-{self.name}"

    def image(self, target: str) -> str:
        return f"{self.registry}/top-coins-{target}"

    def tag(self) -> str:
        return dns_label(self.ref, 100) + ("" if self.is_tag else f"-{self.commit[:12]}")


def dns_label(text: str, limit: int = 63) -> str:
    """``text`` as an RFC 1123 label: lower case, runs of anything else as one ``-``."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-")
    if not label:
        raise DeliveryFailed(f"{text!r} has no letter or digit to name a Kubernetes object")
    return label


def branch_namespace(branch: str) -> str:
    """A branch's own namespace: ``feature/Foo_bar`` is ``top-coins-feature-foo-bar``."""
    name = f"{PRODUCTION_NAMESPACE}-{dns_label(branch, 63 - len(PRODUCTION_NAMESPACE) - 1)}"
    if name == PRODUCTION_NAMESPACE:
        raise DeliveryFailed("a branch cannot be delivered to the production namespace")
    return name


@dataclass
class Runner:
    """Runs (or, dry, only prints) commands; every command is printed before it runs."""

    dry_run: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def step(self, number: int, title: str) -> None:
        self.say(f"==> {number}. {title}")

    def run(
        self, argv: Sequence[str], *, step: str, reads: bool = False, stdin: str | None = None
    ) -> str:
        """``reads``: the command only reads, so a dry run runs it too."""
        self.say("$ " + shlex.join(argv))
        if self.dry_run and not reads:
            return ""
        tool = argv[0]
        if shutil.which(tool) is None:
            raise DeliveryFailed(f"{step}: {tool} is not installed (not on PATH)")
        try:
            result = subprocess.run(
                list(argv), input=stdin, capture_output=True, text=True, check=False
            )
        except OSError as exc:
            raise DeliveryFailed(f"{step}: {tool} could not run: {exc}") from None
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().splitlines()
            last = reason[-1] if reason else f"exit code {result.returncode}"
            raise DeliveryFailed(f"{step}: {shlex.join(argv[:3])} failed: {last}")
        return result.stdout


def build_and_push(runner: Runner, release: Release, version: str) -> dict[str, str]:
    """Each target's digest as the registry has it."""
    runner.step(1, "build the images")
    for target in release.targets:
        reference = f"{release.image(target)}:{release.tag()}"
        runner.run(
            [
                "docker", "build", "--target", target,
                "--build-arg", f"VERSION={version}",
                "--build-arg", f"GIT_COMMIT={release.commit}",
                "--label", f"org.opencontainers.image.version={version}",
                "--label", f"org.opencontainers.image.revision={release.commit}",
                "--tag", reference, str(ROOT),
            ],
            step="build",
        )  # fmt: skip
    runner.step(2, "push them and read back their digests")
    digests = {}
    for target in release.targets:
        reference = f"{release.image(target)}:{release.tag()}"
        runner.run(["docker", "push", reference], step="push")
        shown = runner.run(
            [
                "docker",
                "inspect",
                "--format",
                "{{range .RepoDigests}}{{println .}}{{end}}",
                reference,
            ],
            step="digest",
        )
        digests[target] = UNREAD_DIGEST if runner.dry_run else read_digest(shown, target, release)
    return digests


def read_digest(shown: str, target: str, release: Release) -> str:
    prefix = release.image(target) + "@"
    for line in shown.split():
        if line.startswith(prefix) and DIGEST.fullmatch(line.removeprefix(prefix)):
            return line.removeprefix(prefix)
    raise DeliveryFailed(
        f"digest: no digest of {release.image(target)} after the push (docker inspect showed "
        f"{shown.strip()[:120]!r})"
    )


def kustomization(release: Release, digests: dict[str, str], directory: Path) -> str:
    """The overlay, in the release's namespace, images pinned, the migration Job renamed."""
    images = "".join(
        f"  - name: top-coins-{target}\n"
        f"    newName: {release.image(target)}\n"
        f"    digest: {digests[target]}\n"
        for target in release.targets
    )
    overlay = os.path.relpath(release.overlay, directory)
    return (
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"namespace: {release.namespace}\n"
        f"resources:\n  - {overlay}\n"
        f"images:\n{images}"
        "patches:\n"
        "  # A Job's pod template is immutable: each release migrates with a Job of its own.\n"
        "  - target: {kind: Job, name: top-coins-migrate}\n"
        "    patch: |-\n"
        "      - op: replace\n"
        "        path: /metadata/name\n"
        f"        value: {release.migration_job}\n"
    )


def render(runner: Runner, release: Release, digests: dict[str, str]) -> str:
    runner.step(3, f"render {release.overlay.relative_to(ROOT)} with the digests pinned")
    with tempfile.TemporaryDirectory(prefix="deliver-", dir=ROOT / "k8s") as directory:
        text = kustomization(release, digests, Path(directory))
        (Path(directory) / "kustomization.yaml").write_text(text)
        runner.say(text.rstrip())
        manifests = runner.run(["kubectl", "kustomize", directory], step="render", reads=True)
    if runner.dry_run:
        runner.say(manifests.rstrip())
    for target, digest in digests.items():
        if f"{release.image(target)}@{digest}" not in manifests:
            raise DeliveryFailed(f"render: {release.image(target)} is not pinned to {digest}")
    return manifests


def apply_and_wait(runner: Runner, release: Release, manifests: str) -> None:
    runner.step(4, f"apply to namespace {release.namespace}")
    runner.run(["kubectl", "apply", "-f", "-"], step="apply", stdin=manifests)
    runner.step(5, "wait for the migration and the rollout")
    namespace = ["--namespace", release.namespace]

    def wait_for_job(job: str, step: str) -> None:
        runner.run(
            ["kubectl", *namespace, "wait", "--for=condition=complete",
             f"--timeout={WAIT_SECONDS}s", f"job/{job}"],
            step=step,
        )  # fmt: skip

    wait_for_job(release.migration_job, "migration")
    # Earlier releases' finished migration Jobs go once this one has migrated.
    runner.run(
        ["kubectl", *namespace, "delete", "job", "--ignore-not-found",
         "--selector", "app.kubernetes.io/component=migration",
         "--field-selector", f"metadata.name!={release.migration_job}"],
        step="migration",
    )  # fmt: skip
    if not release.is_tag:
        # A new staging namespace has no data, and the API is ready only once it has a list:
        # run each scraper once now rather than wait for its schedule.
        for cronjob in ("top-coins-ranks", "top-coins-prices"):
            job = f"{cronjob}-{release.name}"
            runner.run(
                ["kubectl", *namespace, "delete", "job", job, "--ignore-not-found"],
                step="first scrape",
            )
            runner.run(
                ["kubectl", *namespace, "create", "job", job, f"--from=cronjob/{cronjob}"],
                step="first scrape",
            )
            wait_for_job(job, "first scrape")
    runner.run(
        ["kubectl", *namespace, "rollout", "status", "deployment/top-coins-api",
         f"--timeout={WAIT_SECONDS}s"],
        step="rollout",
    )  # fmt: skip


def smoke_test(
    base: str, commit: str, say: Callable[[str], None] = print, timeout: float = SMOKE_SECONDS
) -> None:
    """The deployed API, asked as a client would: ready, 200 priced coins, the built commit."""
    base = base.rstrip("/")
    deadline = time.monotonic() + timeout
    status: object = "no answer"
    while True:
        try:
            status = requests.get(f"{base}/readyz", timeout=5).status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise DeliveryFailed(f"smoke: {base}/readyz answered {status} for {timeout:.0f} s")
        time.sleep(1)
    say(f"smoke: {base}/readyz is 200")
    response = requests.get(f"{base}/?limit={ROWS}&format=csv", timeout=10)
    if response.status_code != 200:
        raise DeliveryFailed(
            f"smoke: GET /?limit={ROWS}&format=csv answered {response.status_code}"
        )
    rows = list(csv.reader(io.StringIO(response.text)))
    if not rows or rows[0] != ["Rank", "Symbol", "Price USD"]:
        raise DeliveryFailed(f"smoke: the CSV starts {rows[:1]!r}, not Rank,Symbol,Price USD")
    priced = [row for row in rows[1:] if len(row) == 3 and row[2]]
    if len(rows) - 1 != ROWS or len(priced) != ROWS:
        raise DeliveryFailed(
            f"smoke: {len(rows) - 1} coins of which {len(priced)} priced, expected {ROWS} priced"
        )
    say(f"smoke: {ROWS} coins, all priced")
    served = requests.get(f"{base}/version", timeout=5).json().get("commit")
    if served != commit:
        raise DeliveryFailed(f"smoke: /version names commit {served}, not the built {commit}")
    say(f"smoke: /version names {commit}")


@contextlib.contextmanager
def port_forward(runner: Runner, release: Release) -> Iterator[str]:
    """The API Service on a local port, for the smoke test from outside the cluster."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    argv = ["kubectl", "--namespace", release.namespace, "port-forward",
            "svc/top-coins-api", f"{port}:80"]  # fmt: skip
    runner.say("$ " + shlex.join(argv) + " &")
    if runner.dry_run:
        yield f"http://127.0.0.1:{port}"
        return
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def deliver(runner: Runner, release: Release, given: dict[str, str], smoke_url: str | None) -> None:
    version = release.version
    runner.say(
        f"delivering {'tag' if release.is_tag else 'branch'} {release.ref} at {release.commit}"
        f" as {version} to namespace {release.namespace}"
    )
    missing = [target for target in release.targets if target not in given]
    if missing:
        digests = {**build_and_push(runner, release, version), **given}
    else:
        runner.step(1, "build the images: skipped, every digest was given")
        runner.step(2, "push them: skipped, every digest was given")
        digests = dict(given)
    manifests = render(runner, release, digests)
    apply_and_wait(runner, release, manifests)
    runner.step(6, "smoke-test the API")
    with contextlib.ExitStack() as stack:
        base = smoke_url or stack.enter_context(port_forward(runner, release))
        runner.say(f"smoke-test {base}: /readyz, GET /?limit={ROWS}&format=csv, /version")
        if not runner.dry_run:
            smoke_test(base, release.commit, runner.say)
    runner.say(f"delivered {release.ref} to {release.namespace}")


def teardown(runner: Runner, branch: str) -> None:
    namespace = branch_namespace(branch)
    runner.step(1, f"remove the staging namespace {namespace}")
    runner.run(
        ["kubectl", "delete", "namespace", namespace, "--ignore-not-found", "--wait=false"],
        step="teardown",
    )


def parse_digests(values: Sequence[str]) -> dict[str, str]:
    digests = {}
    for value in values:
        target, _, digest = value.partition("=")
        if target not in ("api", "scraper", "fakeproviders") or not DIGEST.fullmatch(digest):
            raise DeliveryFailed(f"--digest {value!r}: expected TARGET=sha256:<64 hex digits>")
        digests[target] = digest
    return digests


def head_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise DeliveryFailed("the commit: git rev-parse HEAD failed; pass --commit") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/deliver", description=__doc__.splitlines()[0])
    ref = parser.add_mutually_exclusive_group(required=True)
    ref.add_argument("--branch", help="deliver this branch to its own staging namespace")
    ref.add_argument("--tag", help="deliver this tag (vX.Y.Z) to production")
    ref.add_argument("--smoke", metavar="URL", help="only smoke-test the API at URL")
    parser.add_argument("--teardown", action="store_true", help="remove a branch's namespace")
    parser.add_argument("--commit", help="the commit built (default: git rev-parse HEAD)")
    parser.add_argument(
        "--registry", default=os.environ.get("REGISTRY", "registry.invalid/top-coins")
    )
    parser.add_argument(
        "--digest", action="append", default=[], metavar="TARGET=sha256:…",
        help="an image already built and pushed: skips building and pushing when all are given",
    )  # fmt: skip
    parser.add_argument("--smoke-url", help="smoke-test this URL instead of a port-forward")
    parser.add_argument("--dry-run", action="store_true", help="print, change nothing")
    args = parser.parse_args(argv)
    runner = Runner(dry_run=args.dry_run)
    try:
        commit = args.commit or head_commit()
        if args.smoke:
            smoke_test(args.smoke, commit, runner.say)
        elif args.teardown:
            if args.branch is None:
                raise DeliveryFailed("--teardown removes a branch's namespace: name --branch")
            teardown(runner, args.branch)
        else:
            if args.tag is not None and not TAG.fullmatch(args.tag):
                raise DeliveryFailed(f"--tag {args.tag!r}: expected a version tag like v1.2.0")
            release = Release(
                ref=args.tag or args.branch,
                is_tag=args.tag is not None,
                commit=commit,
                registry=args.registry.rstrip("/"),
            )
            deliver(runner, release, parse_digests(args.digest), args.smoke_url)
    except DeliveryFailed as exc:
        print(f"bin/deliver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
