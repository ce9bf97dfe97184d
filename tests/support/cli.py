"""Running the CLI in a test: in this process (fast), or as a real `python -m ragkit` process.

`run_cli_inprocess` is the default: it calls `ragkit.cli.main.main(args)` with the environment and
working directory a subprocess would get, captures stdout and stderr as bytes, and returns the same
`CompletedProcess` as `run_cli`, so a test can switch between them by name. It saves the
interpreter start, the imports (torch, open_clip, pymilvus: seconds each on this machine) and the
model load of every call.

Keep `run_cli` (a subprocess) where the process itself is under test: exit codes seen by a shell,
the locale's encoding, signals and kill -9, what gets imported, environment read at import time
(e.g. huggingface_hub's offline switches), or a Milvus Lite file held by another process.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping

REPO = Path(__file__).resolve().parents[2]
_CLEARED_PREFIXES = ("RAGKIT_", "GEMINI_", "GOOGLE_")  # what run_cli drops from the inherited environment
# Loggers whose level main() changes for the life of its process (restored after each call here).
_LOGGERS = ("", "huggingface_hub", "pymilvus", "milvus_lite", "grpc", "grpc._server")


@contextlib.contextmanager
def cli_environment(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """os.environ and the working directory as `run_cli` gives them to its process; restored after."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    try:
        for name in [name for name in os.environ if name.startswith(_CLEARED_PREFIXES)]:
            del os.environ[name]
        os.environ.update(env)
        os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _closing_libraries() -> Iterator[None]:
    """Close every library the command opened, as the end of its process would (a Milvus Lite
    file stays locked in this process until its last client closes)."""
    from ragkit.cli import common
    opened, open_library = [], common.open_library

    def tracked(settings):
        library = open_library(settings)
        opened.append(library)
        return library

    common.open_library = tracked
    try:
        yield
    finally:
        common.open_library = open_library
        for library in opened:
            library.close()


class _Captured(io.TextIOWrapper):
    """A text stream over bytes, encoded like a UTF-8 process's piped stdout (see main())."""
    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)

    def isatty(self) -> bool:
        return False

    def value(self) -> bytes:
        self.flush()
        return self.buffer.getvalue()


def run_cli_inprocess(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float | None = None
                      ) -> subprocess.CompletedProcess:
    """`python -m ragkit ARGS` run by ragkit.cli.main.main() in this process: the exit code (argparse's
    SystemExit included), stdout and stderr as bytes. `timeout` is accepted for run_cli's signature
    (pytest-timeout guards the test)."""
    from ragkit.cli.main import main
    out, err = _Captured(), _Captured()
    with cli_environment(env, cwd), _closing_libraries(), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess([sys.executable, "-m", "ragkit", *args], code, out.value(), err.value())


# --- a real `python -m ragkit` process ------------------------------------------------------------
def cli_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "ragkit", *args]


def cli_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a CLI process gets: this checkout, and of RAGKIT_*/GEMINI_*/GOOGLE_* only the test's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES)}
    return {**inherited, **env, "PYTHONPATH": str(REPO)}


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 120,
            input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `python -m ragkit ...` in a subprocess like a user would."""
    return subprocess.run(cli_command(args), env=cli_env(env), cwd=cwd, capture_output=True, timeout=timeout,
                          input=input_bytes)


def popen_cli(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen:
    """`python -m ragkit ...` started in the background (to interrupt or kill it), output piped."""
    return subprocess.Popen(cli_command(args), env=cli_env(env), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def run_cli_captured(argv: list[str], env: Mapping[str, str], monkeypatch, capsys) -> tuple[int, str, str]:
    """The CLI in this process with only `env`'s RAGKIT_/GEMINI_ settings: (exit code, stdout, stderr) as text."""
    for key in [k for k in os.environ if k.startswith(("RAGKIT_", "GEMINI_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from ragkit.cli.main import main
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err
