"""The Dockerfile's targets, read with dockerfile-parse, and the build context.

dockerfile-parse evaluates one stage at a time, so a target is read as the single stage it
amounts to: the instructions of the stages it is built on (``FROM runtime AS api``), then its own.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


class Stage:
    def __init__(self, name: str | None, text: str, build_args: Mapping[str, str]) -> None:
        self.name = name
        self.parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), build_args=build_args)
        self.instructions = [
            Instruction(i["instruction"], i["value"])
            for i in self.parser.structure
            if i["instruction"] not in {"FROM", "COMMENT"}
        ]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def _exec_form(self, keyword: str) -> list[str]:
        found = self.last(keyword)
        value = json.loads(found.arguments) if found else []
        assert isinstance(value, list), f"{keyword} must be in exec (JSON) form"
        return value

    @property
    def entrypoint(self) -> list[str]:
        return self._exec_form("ENTRYPOINT")

    @property
    def cmd(self) -> list[str]:
        return self._exec_form("CMD")

    def env(self, base_env: Mapping[str, str]) -> dict[str, str]:
        """What a container gets: the base image's environment, then ENV (ARGs expanded)."""
        self.parser.parent_env = dict(base_env)
        return {**base_env, **self.parser.envs}

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.parser.labels)


class Dockerfile:
    def __init__(self, path: Path, build_args: Mapping[str, str] | None = None) -> None:
        self.build_args = dict(build_args or {})
        self.global_args = ""  # ARGs before the first FROM, which every stage may use
        self.stages: dict[str | None, tuple[str, str]] = {}  # name: (its FROM, its instructions)
        name: str | None = None
        for instruction in DockerfileParser(str(path)).structure:
            keyword, content = instruction["instruction"], instruction["content"]
            if keyword == "FROM":
                base, _, as_name = instruction["value"].partition(" AS ")
                name = as_name.strip() or None
                self.stages[name] = (base.strip(), "")
            elif keyword != "COMMENT" and not self.stages:
                self.global_args += content
            elif keyword != "COMMENT":
                base, body = self.stages[name]
                self.stages[name] = (base, body + content)
        self.names = list(self.stages)

    @classmethod
    def load(cls, path: Path, build_args: Mapping[str, str] | None = None) -> Dockerfile:
        return cls(path, build_args)

    def external_bases(self) -> list[str]:
        return [base for base, _ in self.stages.values() if base not in self.stages]

    def stage(self, name: str | None) -> Stage:
        """The stage as its image ends up: what the stages it is built on did, then its own."""
        base, text = self.stages[name]
        while base in self.stages:
            base, parent = self.stages[base]
            text = parent + text
        return Stage(name, f"{self.global_args}FROM {base}\n{text}", self.build_args)

    @property
    def final(self) -> Stage:
        return self.stage(self.names[-1])


def context_entries() -> tuple[list[str], list[str]]:
    """``.dockerignore`` is an allow-list of one shape: ``*``, then ``!entry`` for each top-level
    file or directory sent, then ``**/name`` for what to leave out inside them.  Read so, it
    needs no pattern matching."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    entries = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    left_out = [line.removeprefix("**/") for line in lines[1 + len(entries) :]]
    assert lines == ["*", *lines[1 : 1 + len(entries)], *(f"**/{n}" for n in left_out)], lines
    assert all(line.startswith("!") for line in lines[1 : 1 + len(entries)]), lines
    assert not [n for n in entries + left_out if "/" in n or "**" in n], lines
    return entries, left_out


def copy_context(target: Path) -> Path:
    """The build context, as the builder receives it, copied into ``target``."""
    entries, left_out = context_entries()
    target.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        source = ROOT / entry
        if source.is_dir():
            shutil.copytree(source, target / entry, ignore=shutil.ignore_patterns(*left_out))
        else:
            shutil.copy2(source, target / entry)
    return target
