"""Sessions for tests, lint, plugins, benchmarks and demo-model training.

Default sessions (run by ``nox`` with no arguments, and by CI): ``tests`` and
``lint``. ``tests`` runs, in one virtualenv, the suite with Numba kernels
compiled, the same suite again with ``NUMBA_DISABLE_JIT=1`` (the plain-Python
reference implementations), and the tests of every plugin package under
``plugins/``. One environment, because each one holds a CPU build of torch
(about 1.7 GB): CI machines with little free disk ran out of space creating the
second one. ``tests_jit``, ``tests_nojit`` and ``plugins`` run one part each
when named (each in its own environment). Slow sessions (``bench``,
``train_demo``) only run when named.

Every session installs the CPU build of torch *first*: any other torch spec can
pull a multi-GB CUDA build.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"
ROOT = Path(__file__).parent
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def install_project(session: nox.Session, *extras: str) -> None:
    session.install(TORCH)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


def plugin_packages() -> list[Path]:
    return sorted(p for p in (ROOT / "plugins").glob("*") if (p / "pyproject.toml").exists())


def run_suite(session: nox.Session, *, jit: bool) -> None:
    env = THREADS if jit else {**THREADS, "NUMBA_DISABLE_JIT": "1"}
    session.run("pytest", "-q", *session.posargs, env=env)


def run_plugin_suites(session: nox.Session, packages: list[Path]) -> None:
    for pkg in packages:
        session.install("-e", str(pkg))
    for pkg in packages:
        if (pkg / "tests").exists():
            session.run("pytest", "-q", str(pkg / "tests"), env=THREADS)


@nox.session
def tests(session: nox.Session) -> None:
    """Everything CI checks, in one environment: JIT suite, no-JIT suite, plugin suites."""
    install_project(session, "dev", "bench")
    run_suite(session, jit=True)
    run_suite(session, jit=False)
    run_plugin_suites(session, plugin_packages())


@nox.session(default=False)
def tests_jit(session: nox.Session) -> None:
    """The test suite with Numba kernels compiled."""
    install_project(session, "dev", "bench")
    run_suite(session, jit=True)


@nox.session(default=False)
def tests_nojit(session: nox.Session) -> None:
    """The test suite on the plain-Python reference path of every Numba kernel."""
    install_project(session, "dev", "bench")
    run_suite(session, jit=False)


@nox.session(default=False)
def plugins(session: nox.Session) -> None:
    """Install every plugin package under plugins/ and run its own tests."""
    packages = plugin_packages()
    if not packages:
        session.skip("no plugin packages under plugins/")
    install_project(session, "dev")
    run_plugin_suites(session, packages)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    paths = [p for p in ("src", "tests", "plugins", "benchmarks", "examples") if (ROOT / p).exists()]
    session.run("ruff", "check", *paths, "noxfile.py")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The full benchmark on the shipped demo model (minutes)."""
    install_project(session, "bench")
    session.run("draftkit", "bench", *session.posargs, env=THREADS)


@nox.session(default=False)
def train_demo(session: nox.Session) -> None:
    """Train the demo target and draft models (about two hours on two cores; resumable).

    The run installs the new folders (replacing the old ones and their ``answers.jsonl``); then write the new
    target's own answers, which belong to its weights, with ``python -m draftkit.demo.answers``.
    """
    install_project(session)
    session.run("python", "-m", "draftkit.demo.train", *session.posargs)
