"""``bin/deliver`` where no Docker engine or cluster runs: its dry runs, its refusals, its smoke
test against the real ``bin/local``, and the CI workflow that calls it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import manifests
from tests.support import ROOT, free_port

DIGESTS = {
    "api": "sha256:" + "a" * 64,
    "scraper": "sha256:" + "b" * 64,
    "fakeproviders": "sha256:" + "c" * 64,
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REGISTRY = "registry.example/acme"

if manifests.kubectl() is None:
    pytest.skip("kubectl is not on PATH: bin/deliver renders with it", allow_module_level=True)


def deliver(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run(
        ["bin/deliver", *args, "--commit", COMMIT, "--registry", REGISTRY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rendered(output: str) -> list[dict]:
    """The manifests a dry run printed: between the render command and the next step."""
    text = output.split("$ kubectl kustomize ", 1)[1].split("\n", 1)[1]
    text = text.split("\n==> 4.", 1)[0]
    return [doc for doc in yaml.safe_load_all(text) if doc]


def given(*targets: str) -> list[str]:
    return [arg for target in targets for arg in ("--digest", f"{target}={DIGESTS[target]}")]


def images(objects: list[dict]) -> set[str]:
    return {
        container["image"]
        for _, pod in manifests.workloads(tuple(objects))
        for container in manifests.all_containers(pod["spec"])
    }


@pytest.mark.parametrize(
    ("ref", "namespace", "targets", "job"),
    [
        (
            ("--branch", "feature/Foo_bar"),
            "top-coins-feature-foo-bar",
            ("api", "scraper", "fakeproviders"),
            "top-coins-migrate-0123456789ab",
        ),
        (("--tag", "v1.2.0"), "top-coins", ("api", "scraper"), "top-coins-migrate-1-2-0"),
    ],
)
def test_a_dry_run_renders_valid_manifests_pinned_to_the_digests_given(
    ref, namespace, targets, job
):
    result = deliver(*ref, *given(*targets), "--dry-run")
    assert result.returncode == 0, result.stderr
    objects = rendered(result.stdout)
    for obj in objects:
        for version in manifests.KUBERNETES_VERSIONS:
            manifests.validate(obj, version)
    namespaced = [o for o in objects if o["kind"] != "Namespace" and "namespace" in o["metadata"]]
    assert {o["metadata"]["namespace"] for o in namespaced} == {namespace}
    ours = {image for image in images(objects) if image.startswith(REGISTRY)}
    assert ours == {f"{REGISTRY}/top-coins-{t}@{DIGESTS[t]}" for t in targets}
    assert not [i for i in images(objects) if "top-coins-" in i and not i.startswith(REGISTRY)]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Job"] == [job]
    # Every step is announced, and nothing is built when every digest is given.
    steps = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert [step[4:6] for step in steps] == ["1.", "2.", "3.", "4.", "5.", "6."]
    assert "$ docker build" not in result.stdout
    assert f"$ kubectl --namespace {namespace} wait --for=condition=complete" in result.stdout
    assert "rollout status deployment/top-coins-api" in result.stdout
    assert f"--field-selector 'metadata.name!={job}'" in result.stdout


def test_a_branch_dry_run_prints_the_build_and_push_of_each_image():
    result = deliver("--branch", "main", "--dry-run")
    assert result.returncode == 0, result.stderr
    for target in ("api", "scraper", "fakeproviders"):
        reference = f"{REGISTRY}/top-coins-{target}:main-0123456789ab"
        assert f"--target {target} " in result.stdout
        assert f"$ docker push {reference}" in result.stdout
    assert f"--label org.opencontainers.image.revision={COMMIT}" in result.stdout
    # Staging runs each scraper once, so that its API has a list to be ready with.
    assert "create job top-coins-ranks-0123456789ab --from=cronjob/top-coins-ranks" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("branch", "namespace"),
    [
        ("feature/Foo_bar", "top-coins-feature-foo-bar"),
        ("UPPER--and..dots", "top-coins-upper-and-dots"),
        ("x" * 80, "top-coins-" + "x" * 53),
    ],
)
def test_a_branch_gets_a_namespace_named_after_it(branch, namespace):
    result = deliver("--teardown", "--branch", branch, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"$ kubectl delete namespace {namespace} --ignore-not-found" in result.stdout
    assert len(namespace) <= 63


def test_a_missing_tool_stops_the_delivery_with_one_line(tmp_path: Path):
    # kubectl and git only: rendering works, building cannot.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kubectl", "git", "bash", "env", "dirname"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    result = deliver("--branch", "main", path=str(bin_dir))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "bin/deliver: build: docker is not installed (not on PATH)"
    ]


def test_a_digest_that_cannot_be_read_stops_the_delivery(tmp_path: Path):
    """A docker that builds and pushes, but whose registry gave no digest back."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    result = deliver("--tag", "v1.2.0", path=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"bin/deliver: digest: no digest of {REGISTRY}/top-coins-api after the push "
        "(docker inspect showed '')"
    ]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--tag", "latest"), "--tag 'latest': expected a version tag like v1.2.0"),
        (("--branch", "main", "--digest", "api=sha256:1"), "--digest 'api=sha256:1'"),
        (("--teardown", "--tag", "v1.0.0"), "--teardown removes a branch's namespace"),
        (("--branch", "///"), "has no letter or digit"),
    ],
)
def test_bad_arguments_are_refused_with_one_line(args, reason):
    result = deliver(*args, "--dry-run")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0]


def test_the_smoke_test_passes_against_bin_local(fresh_database, tmp_path: Path):
    port = free_port()
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(("_API_KEY", "_BASE_URL")) and name != "RANKING_PROVIDER"
    }
    environment.update(
        DATABASE_URL=fresh_database(),
        PORT=str(port),
        # The fake CoinMarketCap prices every coin it ranks, as staging ranks.
        RANKING_PROVIDER="coinmarketcap",
        WEB_CONCURRENCY="1",
        GUNICORN_ACCESS_LOG="",
        GIT_COMMIT=COMMIT,
    )
    log = tmp_path / "local.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bin/local"], cwd=ROOT, env=environment, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            result = deliver("--smoke", f"http://127.0.0.1:{port}")
            assert result.returncode == 0, result.stderr + log.read_text()[-2000:]
            assert result.stdout.splitlines() == [
                f"smoke: http://127.0.0.1:{port}/readyz is 200",
                "smoke: 200 coins, all priced",
                f"smoke: /version names {COMMIT}",
            ]
            wrong = subprocess.run(
                ["bin/deliver", "--smoke", f"http://127.0.0.1:{port}", "--commit", "f" * 40],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert wrong.returncode == 1
            assert wrong.stderr.strip() == (
                f"bin/deliver: smoke: /version names commit {COMMIT}, not the built {'f' * 40}"
            )
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def test_the_workflow_validates_against_the_published_schema():
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.github-workflows", *map(str, workflows)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_only_calls_the_repository_scripts_and_names_its_secrets():
    text = (ROOT / ".github" / "workflows" / "pipeline.yml").read_text()
    workflow = yaml.safe_load(text)
    runs = [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]
    assert ".ci/run" in runs
    assert any("bin/deliver --branch" in run for run in runs)
    assert any("bin/deliver --tag" in run for run in runs)
    assert any("bin/deliver --teardown" in run for run in runs)
    # Secrets are read from the store by name, never written in.
    secret_like = [
        (name, value)
        for job in workflow["jobs"].values()
        for step in job["steps"]
        for name, value in step.get("env", {}).items()
        if any(word in name for word in ("TOKEN", "PASSWORD", "KUBECONFIG", "USER"))
    ]
    assert secret_like
    assert all(value == f"${{{{ secrets.{value[12:-3]} }}}}" for _, value in secret_like)
