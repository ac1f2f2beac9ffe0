"""Just enough of Dockerfile and ``.dockerignore`` to run an image's recipe without Docker.

There is no Docker engine where the tests run, so tests/test_images.py reads the recipe with
this module and carries it out itself.  It knows the subset our Dockerfiles use:

- stages ``FROM image [AS name]``; ``ARG`` before the first ``FROM`` is global;
- ``\\`` line continuations, ``#`` comment lines (also inside a continued instruction);
- ``ENV``/``LABEL`` as ``key=value`` pairs (also the legacy ``ENV key value``),
  ``ARG name[=default]``;
- ``$NAME``, ``${NAME}``, ``${NAME:-default}`` and ``${NAME:+word}`` in ``ENV``, ``LABEL`` and
  ``FROM`` values;
- ``COPY [--from=stage] [--chown=…] [--chmod=…] [--link] src… dst``, also in JSON form;
- ``CMD``/``ENTRYPOINT`` in exec (JSON) form only, since the shell form would swallow SIGTERM.

Limits, on purpose: no ``escape``/``syntax`` directives, no heredocs, no quoting rules beyond
shlex's (so ``'$X'`` in ``ENV`` is still expanded), no variables in ``COPY`` paths.  Any other
instruction is kept as it is, for the caller to refuse or ignore.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class DockerfileError(ValueError):
    """The file uses something this parser does not model; better to fail than to guess."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        value = variables.get(name, "")
        if match["op"] == "-":
            return value or match["word"]
        if match["op"] == "+":
            return match["word"] if value else ""
        return value

    return _VARIABLE.sub(replace, text)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    def words(self) -> list[str]:
        return shlex.split(self.arguments)

    def pairs(self) -> list[tuple[str, str | None]]:
        """``key=value`` words of ENV, LABEL and ARG; a bare ARG name has the value None."""
        words = self.words()
        if self.keyword == "ENV" and len(words) > 1 and "=" not in words[0]:
            return [(words[0], self.arguments.split(None, 1)[1].strip())]
        pairs: list[tuple[str, str | None]] = []
        for word in words:
            key, sep, value = word.partition("=")
            if not sep and self.keyword != "ARG":
                raise DockerfileError(f"line {self.line}: {self.keyword} {word!r} has no value")
            pairs.append((key, value if sep else None))
        return pairs

    def exec_form(self) -> list[str]:
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DockerfileError(f"line {self.line}: {self.keyword} must be a JSON list")
        return value


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None
    chown: str | None
    line: int

    @classmethod
    def parse(cls, instruction: Instruction) -> Copy:
        words = instruction.arguments.split()
        flags: dict[str, str] = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            if name not in {"from", "chown", "chmod", "link"}:
                raise DockerfileError(f"line {instruction.line}: COPY --{name} is not modelled")
            flags[name] = value
        rest = " ".join(words)
        paths = json.loads(rest) if rest.startswith("[") else rest.split()
        if len(paths) < 2:
            raise DockerfileError(f"line {instruction.line}: COPY needs a source and a destination")
        return cls(
            sources=tuple(paths[:-1]),
            destination=paths[-1],
            from_stage=flags.get("from"),
            chown=flags.get("chown"),
            line=instruction.line,
        )


@dataclass(frozen=True)
class Evaluated:
    """A stage's ENV (what a container gets), its ARG values and its labels."""

    env: dict[str, str]
    args: dict[str, str]
    labels: dict[str, str]


@dataclass
class Stage:
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    @property
    def runs(self) -> list[str]:
        return [i.arguments for i in self.all("RUN")]

    @property
    def copies(self) -> list[Copy]:
        return [Copy.parse(i) for i in self.all("COPY")]

    @property
    def user(self) -> str | None:
        found = self.last("USER")
        return found.arguments.strip() if found else None

    @property
    def entrypoint(self) -> list[str]:
        found = self.last("ENTRYPOINT")
        return found.exec_form() if found else []

    @property
    def cmd(self) -> list[str]:
        found = self.last("CMD")
        return found.exec_form() if found else []

    @property
    def exposed(self) -> list[str]:
        return [port for i in self.all("EXPOSE") for port in i.words()]

    def evaluate(
        self,
        base_env: Mapping[str, str],
        build_args: Mapping[str, str],
        global_args: Mapping[str, str | None] | None = None,
    ) -> Evaluated:
        """Walks ARG/ENV/LABEL in order, as the builder does: ENV beats ARG of the same name."""
        env = dict(base_env)
        args: dict[str, str] = {}
        labels: dict[str, str] = {}
        for instruction in self.instructions:
            if instruction.keyword not in {"ARG", "ENV", "LABEL"}:
                continue
            for key, raw in instruction.pairs():
                if instruction.keyword == "ARG":
                    default = raw if raw is not None else (global_args or {}).get(key)
                    if key in build_args:
                        args[key] = build_args[key]
                    elif default is not None:
                        args[key] = expand(default, {**args, **env})
                    continue
                value = expand(raw or "", {**args, **env})
                if instruction.keyword == "ENV":
                    env[key] = value
                else:
                    labels[key] = value
        return Evaluated(env=env, args=args, labels=labels)


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    @classmethod
    def load(cls, path: Path) -> Dockerfile:
        return cls.parse(path.read_text())

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        global_args: dict[str, str | None] = {}
        stages: list[Stage] = []
        for instruction in _instructions(text):
            if instruction.keyword == "FROM":
                words = instruction.arguments.split()
                words = [w for w in words if not w.startswith("--platform=")]
                if len(words) == 3 and words[1].upper() == "AS":
                    base, name = words[0], words[2]
                elif len(words) == 1:
                    base, name = words[0], None
                else:
                    raise DockerfileError(f"line {instruction.line}: FROM image [AS name]")
                defaults = {k: v for k, v in global_args.items() if v is not None}
                stages.append(Stage(expand(base, defaults), name, instruction.line))
            elif not stages:
                if instruction.keyword != "ARG":
                    raise DockerfileError(f"line {instruction.line}: only ARG may precede FROM")
                global_args.update(instruction.pairs())
            else:
                stages[-1].instructions.append(instruction)
        if not stages:
            raise DockerfileError("no FROM")
        return cls(global_args, stages)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise DockerfileError(f"no stage named {name!r}")

    def external_bases(self) -> list[str]:
        """The images stages start from, leaving out stages built on earlier stages."""
        names = set()
        bases = []
        for stage in self.stages:
            if stage.base not in names:
                bases.append(stage.base)
            if stage.name:
                names.add(stage.name)
        return bases


def _instructions(text: str) -> Iterator[Instruction]:
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        continued = raw.rstrip().endswith("\\")
        pending.append(raw.rstrip()[:-1] if continued else raw)
        if continued:
            continue
        keyword, _, arguments = "".join(pending).strip().partition(" ")
        pending = []
        yield Instruction(keyword.upper(), arguments.strip(), start)
    if pending:
        raise DockerfileError(f"line {start}: the last instruction ends with a continuation")


class DockerIgnore:
    """``.dockerignore`` as the builder applies it: the last matching pattern decides.

    A pattern matches a path or any of its parent directories.  Patterns are matched segment
    by segment with :func:`fnmatch.fnmatchcase`, so ``*`` stays within one segment as Go's
    ``filepath.Match`` does, and a ``**`` segment matches any number of segments.  Limits:
    fnmatch's ``[!…]`` stands for Go's ``[^…]``, and ``\\`` escapes are not supported.
    """

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, list[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if include else line).lstrip("/")
            self.patterns.append((include, pattern.split("/")))

    @classmethod
    def load(cls, path: Path) -> DockerIgnore:
        return cls(path.read_text() if path.exists() else "")

    def excluded(self, path: str) -> bool:
        parts = PurePosixPath(path).parts
        excluded = False
        for include, pattern in self.patterns:
            prefixes = (parts[:n] for n in range(1, len(parts) + 1))
            if any(_match(pattern, list(prefix)) for prefix in prefixes):
                excluded = not include
        return excluded

    def context(self, root: Path) -> list[str]:
        """Relative paths of the files the builder would receive, sorted."""
        found: list[str] = []
        for directory, dirnames, filenames in os.walk(root):
            relative = Path(directory).relative_to(root)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not self.excluded((relative / d).as_posix())
                or self._may_include_under((relative / d).parts)
            )
            for name in filenames:
                path = (relative / name).as_posix()
                if not self.excluded(path):
                    found.append(path)
        return sorted(found)

    def _may_include_under(self, parts: tuple[str, ...]) -> bool:
        """Whether a ``!`` pattern could bring back something inside an excluded directory;
        if not, the walk skips it (``.venv`` and ``.git`` are large)."""
        for include, pattern in self.patterns:
            if include and (
                "**" in pattern[: len(parts)]
                or (len(pattern) > len(parts) and _match(pattern[: len(parts)], list(parts)))
            ):
                return True
        return False


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (
        bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])
    )
