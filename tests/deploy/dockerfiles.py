"""The service Dockerfiles, parsed by BuildKit's own parser (the ``dockerfile`` package)."""

from __future__ import annotations

from dataclasses import dataclass

import dockerfile

from .repo import ROOT


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` stage: its base image, name and instructions."""

    base: str
    name: str | None
    commands: tuple[dockerfile.Command, ...]

    def all(self, instruction: str) -> list[dockerfile.Command]:
        return [command for command in self.commands if command.cmd == instruction]

    def last(self, instruction: str) -> dockerfile.Command:
        found = self.all(instruction)
        assert found, f"stage {self.name or self.base} has no {instruction}"
        return found[-1]

    def env(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for command in self.all("ENV"):
            pairs.update(zip(command.value[::2], command.value[1::2], strict=True))
        return pairs


def path(service: str):
    return ROOT / "services" / service / "Dockerfile"


def stages(service: str) -> list[Stage]:
    """The stages of ``services/<service>/Dockerfile`` in order; the last one is the image."""
    result: list[Stage] = []
    for command in dockerfile.parse_file(str(path(service))):
        if command.cmd == "FROM":
            base, *rest = command.value
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None
            result.append(Stage(base, name, ()))
        else:
            assert result, "an instruction before the first FROM"
            last = result[-1]
            result[-1] = Stage(last.base, last.name, (*last.commands, command))
    return result


def context_copies(service: str) -> list[str]:
    """Every source a ``COPY``/``ADD`` takes from the build context (not from another stage)."""
    return [
        source
        for stage in stages(service)
        for command in stage.commands
        if command.cmd in ("COPY", "ADD") and not any(flag.startswith("--from=") for flag in command.flags)
        for source in command.value[:-1]
    ]
