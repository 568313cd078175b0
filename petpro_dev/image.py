"""``python -m petpro_dev.image``: the container image, from a fresh machine (``make image``).

1. **Engine**: docker (Debian's ``docker.io``; podman works too with ``CONTAINER_ENGINE=podman``),
   installed with apt when missing (as root), its daemon started when none answers, and always
   **without touching iptables**: ``dockerd --iptables=false --ip-forward=false --bridge=none`` (a plain
   dockerd sets the FORWARD policy to DROP, which silently cuts every network-namespace test on the
   machine).  Builds and containers use ``--network host``.
2. **Base**: ``PYTHON_IMAGE`` (the Dockerfile's pinned python image) when it is present or can be
   pulled; else (no registry reachable) a local base made from the Debian mirror apt already uses:
   ``mmdebstrap`` (python3, venv, CA certificates plus the machine's own CAs, so pip works inside the
   build) → ``docker import`` as ``LOCAL_BASE``.  Made once, reused.
3. **Build** with BuildKit (``DOCKER_BUILDKIT=1``): ``IMAGE:TAG``; the dependency layers come before the
   source, so a source-only change rebuilds in seconds.
4. **SBOM**: the Dockerfile's ``sbom`` stage runs cyclonedx-bom over the image's own venv;
   written to ``build/sbom.cdx.json``.
5. **Report**: size (uncompressed; ``--gzip`` also measures ``docker save | gzip``) and build time.

``python -m petpro_dev.image engine`` only makes the engine ready (the container tests call it).
Dev tooling: not part of the image.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON_IMAGE = "python:3.11.14-slim-bookworm"  # the Dockerfile's ARG default
LOCAL_BASE = "petpro-local/python:3.11-bookworm"
DEBIAN_SUITE = "bookworm"
ENGINE_PACKAGES = ("docker.io", "containerd", "runc", "iptables", "mmdebstrap")
DOCKERD_FLAGS = ("--iptables=false", "--ip-forward=false", "--bridge=none")
SBOM = ROOT / "build" / "sbom.cdx.json"


class ImageError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"image: {msg}", flush=True)


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, text=True, **kw)  # type: ignore[call-overload, no-any-return]


# --------------------------------------------------------------------------------------------- engine


def docker_client() -> str | None:
    """Debian's docker client first: BuildKit works with it without buildx (a newer client on PATH
    may insist on the buildx plugin)."""
    for path in ("/usr/bin/docker", shutil.which("docker")):
        if path and Path(path).exists():
            return path
    return None


def engine_name() -> str:
    return os.environ.get("CONTAINER_ENGINE", "").rsplit("/", 1)[-1] or "docker"


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise ImageError(f"missing {' '.join(packages)} and not root: apt-get install {' '.join(packages)}")
    log(f"installing Debian's {' '.join(packages)} (their services are not started)")
    policy = Path("/usr/sbin/policy-rc.d")
    own = not policy.exists()
    if own:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], check=True, env=env)
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)
    finally:
        if own:
            policy.unlink(missing_ok=True)


def ensure_engine() -> list[str]:
    """The engine's command (``[docker]`` or ``[podman]``), installed and its daemon answering."""
    if engine_name() == "podman":
        exe = shutil.which("podman")
        if exe is None:
            _apt_install(["podman", "catatonit", "mmdebstrap"])
            exe = shutil.which("podman") or "/usr/bin/podman"
        return [exe]
    client = docker_client()
    if client is None or shutil.which("dockerd") is None or shutil.which("mmdebstrap") is None:
        _apt_install(list(ENGINE_PACKAGES))
        client = docker_client()
    if client is None:
        raise ImageError("no docker client after installing docker.io")
    if _run([client, "info"], capture_output=True).returncode != 0:
        start_dockerd()
        deadline = time.monotonic() + 30
        while _run([client, "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise ImageError(f"dockerd did not answer in 30 s; see {dockerd_log()}")
            time.sleep(0.2)
    return [client]


def dockerd_log() -> Path:
    return Path(tempfile.gettempdir()) / "petpro-dockerd.log"


def start_dockerd() -> None:
    """dockerd in the background, never touching iptables (module docstring)."""
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if os.geteuid() != 0:
        raise ImageError("the docker daemon is not running and only root can start it")
    if shutil.which("containerd") is None:
        raise ImageError("containerd is missing (apt-get install containerd)")
    log(f"starting {dockerd} {' '.join(DOCKERD_FLAGS)} (log: {dockerd_log()})")
    with dockerd_log().open("ab") as out:
        subprocess.Popen(
            [dockerd, *DOCKERD_FLAGS],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def forward_policy() -> str | None:
    """The FORWARD chain's policy (ACCEPT/DROP), or None when iptables is not installed."""
    for exe in ("iptables", "iptables-legacy", "iptables-nft"):
        path = shutil.which(exe) or (f"/usr/sbin/{exe}" if Path(f"/usr/sbin/{exe}").exists() else None)
        if path:
            out = _run([path, "-S", "FORWARD"], capture_output=True).stdout
            for line in out.splitlines():
                if line.startswith("-P FORWARD "):
                    return line.split()[2]
    return None


# ----------------------------------------------------------------------------------------------- base


def has_image(engine: list[str], ref: str) -> bool:
    return _run([*engine, "image", "inspect", ref], capture_output=True).returncode == 0


def ensure_base(engine: list[str], python_image: str) -> str:
    """``python_image`` if present or pullable, else the local Debian base (made once)."""
    if has_image(engine, python_image):
        return python_image
    try:
        pulled = _run([*engine, "pull", "-q", python_image], capture_output=True, timeout=60)
        if pulled.returncode == 0:
            return python_image
        reason = (pulled.stderr or pulled.stdout).strip().splitlines()[-1:] or ["?"]
    except subprocess.TimeoutExpired:
        reason = ["timed out"]
    log(f"{python_image} cannot be pulled ({reason[0]}): using the local base {LOCAL_BASE}")
    if not has_image(engine, LOCAL_BASE):
        make_local_base(engine)
    return LOCAL_BASE


def debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    listfile = Path("/etc/apt/sources.list")
    if listfile.exists():
        for line in listfile.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    raise ImageError("no Debian mirror found in /etc/apt (set one or make PYTHON_IMAGE pullable)")


def make_local_base(engine: list[str]) -> None:
    """mmdebstrap a minimal Debian with Python 3.11 and the machine's CA certificates → LOCAL_BASE."""
    if shutil.which("mmdebstrap") is None:
        _apt_install(["mmdebstrap"])
    mirror = debian_mirror()
    security = mirror.replace("/debian", "/debian-security") if mirror.endswith("/debian") else None
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="petpro-base-") as tmp:
        tar = Path(tmp) / "base.tar"
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python-is-python3,ca-certificates",
            "--aptopt=Acquire::Retries=3",
            # no docs, man pages or translations in the image (the licences stay)
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        ]
        if cas:
            argv.append(
                "--customize-hook=copy-in " + " ".join(map(str, cas)) + " /usr/local/share/ca-certificates/"
            )
        argv += [
            '--customize-hook=chroot "$1" update-ca-certificates',
            # usrmerge did its work at bootstrap; it is what pulls perl in (~50 MB)
            '--customize-hook=chroot "$1" apt-get purge -y -qq usrmerge perl libperl5.36 perl-modules-5.36'
            " libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl",
            # apt's lists and caches, and glibc's iconv modules (Python does not use iconv), are of no
            # use in the image
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/lib/x86_64-linux-gnu/gconv',
            DEBIAN_SUITE,
            str(tar),
            f"deb {mirror} {DEBIAN_SUITE} main",
            f"deb {mirror} {DEBIAN_SUITE}-updates main",
        ]
        if security:
            argv.append(f"deb {security} {DEBIAN_SUITE}-security main")
        log(f"making the local base from {mirror} (mmdebstrap, ~40 s)")
        result = _run(argv, capture_output=True)
        if result.returncode != 0:
            raise ImageError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
        _run(
            [
                *engine,
                "import",
                "--change",
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "--change",
                'CMD ["python3"]',
                str(tar),
                LOCAL_BASE,
            ],
            check=True,
            capture_output=True,
        )
    log(f"local base {LOCAL_BASE} made in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------------------------------------- build


def context_dir() -> Path:
    """The build context: the checkout, or (when ``node_modules`` is a symlink, as in a worktree that
    shares another checkout's, which docker does not follow) a copy of what .dockerignore lets in."""
    if not (ROOT / "node_modules").is_symlink():
        return ROOT
    ctx = Path(tempfile.gettempdir()) / f"petpro-build-context-{os.getuid()}"
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir()
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        if line.startswith("!"):
            rel = line[1:].rstrip("/")
            src, dst = ROOT / rel, ctx / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                shutil.copyfile(src, dst)
    for name in ("Dockerfile", ".dockerignore"):
        shutil.copyfile(ROOT / name, ctx / name)
    return ctx


def build(
    engine: list[str], tag: str, base: str, *, target: str | None = None, output: Path | None = None
) -> float:
    """Build the Dockerfile (BuildKit, host network); the seconds it took."""
    argv = [*engine, "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}"]
    if target:
        argv += ["--target", target]
    if output:
        argv += ["--output", f"type=local,dest={output}"]
    else:
        argv += ["-t", tag]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    started = time.monotonic()
    result = subprocess.run([*argv, str(context_dir())], env=env, text=True, capture_output=True)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(argv)} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return time.monotonic() - started


def size(engine: list[str], tag: str) -> int:
    out = _run([*engine, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, check=True)
    return int(out.stdout.strip())


def gzipped_size(engine: list[str], tag: str) -> int:
    proc = subprocess.Popen([*engine, "save", tag], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    counter = _Counter()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6) as gz:
        shutil.copyfileobj(proc.stdout, gz, 1 << 20)
    proc.wait()
    return counter.n


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def sbom(engine: list[str], base: str, out: Path = SBOM) -> Path:
    """CycloneDX JSON of the image's venv (the Dockerfile's sbom stage) → ``out``."""
    with tempfile.TemporaryDirectory(prefix="petpro-sbom-") as tmp:
        build(engine, "", base, target="sbom", output=Path(tmp))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "sbom.cdx.json", out)
    doc = json.loads(out.read_text())
    log(
        f"SBOM: {out.relative_to(ROOT)} ({len(doc.get('components', []))} components, CycloneDX {doc.get('specVersion')})"
    )
    return out


def version() -> str:
    import tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m petpro_dev.image", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="build", choices=["build", "engine", "base"])
    parser.add_argument("--image", default=os.environ.get("IMAGE", "petpro"))
    parser.add_argument("--tag", default=os.environ.get("IMAGE_TAG") or None)
    parser.add_argument("--python-image", default=os.environ.get("PYTHON_IMAGE") or DEFAULT_PYTHON_IMAGE)
    parser.add_argument("--no-sbom", action="store_true")
    parser.add_argument(
        "--gzip", action="store_true", help="also measure the compressed size (docker save | gzip)"
    )
    args = parser.parse_args(argv)
    try:
        engine = ensure_engine()
        if args.command == "engine":
            log(f"{engine[0]} ready; FORWARD policy {forward_policy()}")
            return 0
        base = ensure_base(engine, args.python_image)
        if args.command == "base":
            log(f"base {base}")
            return 0
        ref = f"{args.image}:{args.tag or version()}"
        seconds = build(engine, ref, base)
        report = f"{ref} built in {seconds:.1f} s on {base}: {size(engine, ref) / 1e6:.0f} MB"
        if args.gzip:
            report += f", {gzipped_size(engine, ref) / 1e6:.0f} MB gzipped"
        log(report)
        if not args.no_sbom:
            sbom(engine, base)
    except ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
