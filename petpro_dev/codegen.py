"""Code generation for the PetPro contracts: ``protos/petpro/**/*.proto`` -> ``gen/``.

Usage::

    python -m petpro_dev.codegen            # regenerate gen/ (what `make gen` runs)
    python -m petpro_dev.codegen --check    # exit 1 if gen/ differs from what the protos produce
    python -m petpro_dev.codegen --lint     # buf lint (STANDARD, protos/buf.yaml) on a freshly built image
    python -m petpro_dev.codegen --breaking # buf breaking (FILE) against the released image protos/released/

Everything runs offline from installed wheels; nothing is fetched:

* ``google/protobuf/*.proto`` from grpcio-tools (``grpc_tools/_proto``);
* ``google/{api,rpc,type}/*.proto`` from googleapis-common-protos (its site-packages root);
* ``buf/validate/validate.proto``: protovalidate does not ship the .proto, only its serialized
  FileDescriptorProto inside ``protovalidate/_gen/buf/validate/validate_pb.py``. It is extracted into
  a FileDescriptorSet and handed to protoc with ``--descriptor_set_in`` (protoc looks files up in
  the ``-I`` source tree first, then in that set). ``gen/buf/validate/validate_pb2.py`` is generated
  from it too, because our ``*_pb2.py`` import ``buf.validate.validate_pb2``.

Output (deterministic: same inputs and tool versions -> byte-identical files)::

    gen/petpro_api/<domain>/v1/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py, *_pb2_grpc.pyi (+ __init__.py files)
    gen/petpro_api/petpro.binpb  FileDescriptorSet with imports and source info (Envoy, OpenAPI, buf)
    gen/petpro_api/{openapi.json,envoy_transcoder.binpb,envoy_routes.json}  the edge's (edge.gateway.build)
    gen/buf/validate/validate_pb2.py(i) (+ __init__.py files)

The generated code has its own import root, ``petpro_api`` (``from petpro_api.booking.v1 import
booking_pb2``), apart from the runtime kit ``petpro``; the proto packages, file names and wire names stay
``petpro.booking.v1``.  protoc's Python generators name modules after the .proto paths and have no
option for another root, so the ``petpro/`` tree protoc writes is moved to ``petpro_api/`` and its
imports of our own modules are rewritten (:func:`rehome`): driven by the descriptor set (only modules
generated from our files), located with ``ast`` (only import statements and the module name handed to
``_builder``), ``.pyi`` stubs too.  protoletariat, the maintained tool for this, pins
``protobuf<6`` and cannot be installed beside protobuf 7.  ``gen/`` is mapped into the distribution by
pyproject's ``packages.find`` (``where = [".", "gen"]``): ``pip install .`` installs ``petpro_api``
and ``buf``; an editable install maps them to ``gen/``.
Type stubs come from mypy-protobuf (``protoc-gen-mypy`` / ``protoc-gen-mypy_grpc``), which carries the
proto comments into the stubs.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GEN_DIR = ROOT / "gen"
IMAGE_NAME = "petpro.binpb"
API_ROOT = "petpro_api"  # import root of the generated petpro.<domain>.v1 modules
PROTO_ROOT_PACKAGE = "petpro"  # first path component of our .proto files (and of their proto packages)
IMAGE_PATH = f"{API_ROOT}/{IMAGE_NAME}"  # inside the petpro_api package, so it installs with it
API_INIT = '''"""Generated PetPro contracts (``make gen``; do not edit).

``petpro_api.<domain>.v1`` holds the modules protoc generates from ``protos/petpro/<domain>/v1``; the
proto packages and wire names are ``petpro.<domain>.v1``.  ``petpro.binpb`` beside this file is the
FileDescriptorSet of every contract with imports and source info.
"""
'''
# The descriptor image of the last released contracts: `buf breaking` compares the protos against it.
# On a release, copy gen/petpro_api/petpro.binpb here (a new file per major version, e.g. petpro-v2.binpb).
RELEASED_IMAGE = PROTO_ROOT / "released" / "petpro-v1.binpb"
VALIDATE_PROTO = "buf/validate/validate.proto"

# Files under gen/ that are not generated outputs and must be ignored when comparing.
_IGNORED_DIRS = {"__pycache__"}
_IGNORED_SUFFIXES = (".pyc",)


class CodegenError(RuntimeError):
    """A generation step failed (message is meant for humans)."""


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------


def _module_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise CodegenError(f"cannot find module {module!r}: is the venv set up (make setup)?")
    return Path(spec.origin).parent


def wkt_include() -> Path:
    """google/protobuf/*.proto shipped with grpcio-tools."""
    return _module_dir("grpc_tools") / "_proto"


def googleapis_include() -> Path:
    """Include root holding google/api, google/rpc, google/type (googleapis-common-protos)."""
    root = _module_dir("google.api.annotations_pb2").parent.parent
    if not (root / "google" / "api" / "annotations.proto").is_file():
        raise CodegenError(f"google/api/annotations.proto not found under {root}")
    return root


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Our protos, relative to protos/, sorted (stable order = stable output)."""
    files = sorted(p.relative_to(proto_root).as_posix() for p in (proto_root / "petpro").rglob("*.proto"))
    if not files:
        raise CodegenError(f"no .proto files under {proto_root / 'petpro'}")
    return files


def validate_file_descriptor_bytes() -> bytes:
    """The serialized FileDescriptorProto of buf/validate/validate.proto embedded in protovalidate.

    Read from the source with ``ast`` (no import of protovalidate's own protobuf runtime): the file
    calls ``file_desc(b'...', [deps], {stubs})``; the first argument is what we need.
    """
    path = _module_dir("protovalidate") / "_gen" / "buf" / "validate" / "validate_pb.py"
    if not path.is_file():
        raise CodegenError(f"{path} not found: protovalidate layout changed, revisit petpro_dev/codegen.py")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "file_desc"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            return node.args[0].value
    raise CodegenError(f"no file_desc(b'...') call in {path}: protovalidate layout changed")


# --------------------------------------------------------------------------------------------------
# protoc
# --------------------------------------------------------------------------------------------------


def _protoc(args: Sequence[str]) -> None:
    from grpc_tools import protoc

    rc = protoc.main(["grpc_tools.protoc", *args])
    if rc != 0:
        raise CodegenError(f"protoc failed (exit {rc}); args: {' '.join(args)}")


def _plugin(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        raise CodegenError(
            f"{name} not found: install the devstack extra (pip install -e '.[dev,devstack]', make setup)"
        )
    return exe


def build_validate_descriptor_set(workdir: Path) -> Path:
    """Write a FileDescriptorSet with buf/validate/validate.proto and its google/protobuf deps."""
    from google.protobuf import descriptor_pb2

    validate = descriptor_pb2.FileDescriptorProto.FromString(validate_file_descriptor_bytes())
    if validate.name != VALIDATE_PROTO:
        raise CodegenError(f"embedded descriptor is {validate.name!r}, expected {VALIDATE_PROTO!r}")
    deps_out = workdir / "validate_deps.binpb"
    _protoc(
        [
            f"-I{wkt_include()}",
            "--include_imports",
            f"--descriptor_set_out={deps_out}",
            *sorted(validate.dependency),
        ]
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(deps_out.read_bytes())
    fds.file.append(validate)
    out = workdir / "validate.binpb"
    out.write_bytes(fds.SerializeToString(deterministic=True))
    return out


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> None:
    """Generate the whole gen/ tree into ``out_dir`` (which must exist and be empty)."""
    with tempfile.TemporaryDirectory(prefix="petpro-codegen-") as tmp:
        validate_set = build_validate_descriptor_set(Path(tmp))
        plugins = [
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        ]
        # buf/validate/validate_pb2.py(i), straight from the descriptor set (no -I needed).
        _protoc(
            [
                f"--descriptor_set_in={validate_set}",
                *plugins,
                f"--python_out={out_dir}",
                f"--mypy_out=quiet:{out_dir}",
                VALIDATE_PROTO,
            ]
        )
        for pkg in ("buf", "buf/validate"):
            (out_dir / pkg / "__init__.py").write_text("", encoding="utf-8")
        # Our contracts: messages, stubs, type stubs and the descriptor image.
        _protoc(
            [
                f"-I{proto_root}",
                f"-I{wkt_include()}",  # before site-packages so WKTs always come from grpcio-tools
                f"-I{googleapis_include()}",
                f"--descriptor_set_in={validate_set}",
                *plugins,
                f"--python_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                f"--mypy_out=quiet:{out_dir}",
                f"--mypy_grpc_out=quiet:{out_dir}",
                "--include_imports",
                "--include_source_info",
                f"--descriptor_set_out={Path(tmp) / IMAGE_NAME}",
                *proto_files(proto_root),
            ]
        )
        image = Path(tmp) / IMAGE_NAME
        _drop_empty_grpc_modules(out_dir, image)
        rehome(out_dir, image)
        shutil.copyfile(image, out_dir / IMAGE_PATH)
        # the edge's outputs from the same descriptors: openapi.json, Envoy's transcoder set and routes
        from edge.gateway.build import write_outputs

        write_outputs(out_dir / API_ROOT)


def _drop_empty_grpc_modules(out_dir: Path, image_path: Path) -> None:
    """The gRPC plugins write a *_pb2_grpc module for every file; keep them only where a service is."""
    for file in _our_files(image_path):
        if not file.service:
            stem = file.name.removesuffix(".proto")
            for suffix in ("_pb2_grpc.py", "_pb2_grpc.pyi"):
                (out_dir / f"{stem}{suffix}").unlink(missing_ok=True)


def _our_files(image_path: Path) -> list:
    from google.protobuf import descriptor_pb2

    image = descriptor_pb2.FileDescriptorSet.FromString(image_path.read_bytes())
    return [f for f in image.file if f.name.startswith(f"{PROTO_ROOT_PACKAGE}/")]


def rehome(out_dir: Path, image_path: Path) -> None:
    """Move protoc's ``petpro/`` output to ``petpro_api/`` and point its imports there.

    Every module generated from one of our files (``petpro/booking/v1/booking.proto`` ->
    ``petpro.booking.v1.booking_pb2`` and ``..._pb2_grpc``) is renamed to ``petpro_api.…``: in the
    ``from X import Y`` / ``import X`` statements that name it and in the module name the ``_pb2``
    modules pass to ``_builder.BuildTopDescriptorsAndMessages``.  Anything else (google.*, buf.*)
    is left alone.  Packages get empty ``__init__.py`` files (regular packages, found by setuptools).
    """
    src, dest = out_dir / PROTO_ROOT_PACKAGE, out_dir / API_ROOT
    if dest.exists():
        raise CodegenError(f"{dest} exists before the move: protoc wrote into the import root")
    stray = sorted(src.rglob("__init__.py"))
    if stray:
        raise CodegenError(f"unexpected __init__.py in protoc's output: {stray}")
    renames: dict[str, str] = {}
    for file in _our_files(image_path):
        stem = file.name.removesuffix(".proto").replace("/", ".")
        for suffix in ("_pb2", "_pb2_grpc"):
            renames[stem + suffix] = API_ROOT + stem.removeprefix(PROTO_ROOT_PACKAGE) + suffix
    src.rename(dest)
    for path in sorted(dest.rglob("*.py*")):
        if path.suffix in (".py", ".pyi"):
            path.write_text(
                _rewrite_module(path.read_text(encoding="utf-8"), renames, path), encoding="utf-8"
            )
    (dest / "__init__.py").write_text(API_INIT, encoding="utf-8")
    for d in sorted(p for p in dest.rglob("*") if p.is_dir()):
        (d / "__init__.py").write_text("", encoding="utf-8")


def _rewrite_module(source: str, renames: dict[str, str], path: Path) -> str:
    """``source`` with every module of ``renames`` replaced where the AST names it (see :func:`rehome`)."""
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (line index, start col, end col, replacement)

    def edit(node: ast.AST, old: str, new: str, start_col: int) -> None:
        line = lines[node.lineno - 1]
        if node.end_lineno != node.lineno or line[start_col : start_col + len(old)] != old:
            raise CodegenError(f"{path}:{node.lineno}: unexpected layout of a generated import")
        edits.append((node.lineno - 1, start_col, start_col + len(old), new))

    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parent = {m.rsplit(".", 1)[0] for m in renames}
            if node.module in parent:
                if any(f"{node.module}.{a.name}" not in renames for a in node.names):
                    raise CodegenError(f"{path}:{node.lineno}: import of an unknown generated module")
                new_parent = renames[f"{node.module}.{node.names[0].name}"].rsplit(".", 1)[0]
                edit(node, f"from {node.module} ", f"from {new_parent} ", node.col_offset)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in renames:
                    if len(node.names) != 1:
                        raise CodegenError(f"{path}:{node.lineno}: unexpected multi-module import")
                    edit(node, f"import {alias.name}", f"import {renames[alias.name]}", node.col_offset)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "BuildTopDescriptorsAndMessages"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in renames
        ):
            arg = node.args[1]
            old = repr(arg.value)
            edit(arg, old, repr(renames[arg.value]), arg.col_offset)
    for index, start, end, new in sorted(edits, reverse=True):
        lines[index] = lines[index][:start] + new + lines[index][end:]
    return "".join(lines)


# --------------------------------------------------------------------------------------------------
# compare / sync
# --------------------------------------------------------------------------------------------------


def _tree(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _IGNORED_DIRS]
        for name in filenames:
            if not name.endswith(_IGNORED_SUFFIXES):
                files.add((Path(dirpath) / name).relative_to(root).as_posix())
    return files


def diff_trees(expected: Path, actual: Path) -> tuple[list[str], list[str], list[str]]:
    """(stale, missing, extra) relative paths of ``actual`` compared with ``expected``."""
    want, have = _tree(expected), _tree(actual)
    stale = sorted(p for p in want & have if not filecmp.cmp(expected / p, actual / p, shallow=False))
    return stale, sorted(want - have), sorted(have - want)


def sync(src: Path, dest: Path) -> list[str]:
    """Make ``dest`` hold exactly the files of ``src``; touches only files that differ."""
    stale, missing, extra = diff_trees(src, dest)
    for rel in extra:
        (dest / rel).unlink()
    for rel in stale + missing:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)
    # Remove directories left empty by deleted files (keep __pycache__-only dirs alone: harmless).
    for dirpath, _dirnames, _filenames in sorted(os.walk(dest), key=lambda t: -len(t[0])):
        d = Path(dirpath)
        if d != dest and not any(d.iterdir()):
            d.rmdir()
    return [f"~ {p}" for p in stale] + [f"+ {p}" for p in missing] + [f"- {p}" for p in extra]


# --------------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------------


def cmd_generate(gen_dir: Path, proto_root: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="petpro-gen-") as tmp:
        generate(Path(tmp), proto_root)
        gen_dir.mkdir(parents=True, exist_ok=True)
        changes = sync(Path(tmp), gen_dir)
    for line in changes:
        print(line)
    print(f"gen: {len(_tree(gen_dir))} files in {_display(gen_dir)}, {len(changes)} changed")
    return 0


def cmd_check(gen_dir: Path, proto_root: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="petpro-gen-check-") as tmp:
        generate(Path(tmp), proto_root)
        stale, missing, extra = diff_trees(Path(tmp), gen_dir)
    if not (stale or missing or extra):
        print(f"gen: {_display(gen_dir)} is up to date")
        return 0
    print(f"{_display(gen_dir)} is stale: run make gen (python -m petpro_dev.codegen)", file=sys.stderr)
    for label, paths in (("stale", stale), ("missing", missing), ("extra", extra)):
        for p in paths:
            print(f"  {label}: {p}", file=sys.stderr)
    return 1


def buf_executable() -> Path:
    exe = ROOT / "node_modules" / ".bin" / "buf"
    if not exe.exists():
        raise CodegenError(f"{exe} not found: run `npm ci` (make setup) to install @bufbuild/buf")
    return exe


def cmd_lint(proto_root: Path) -> int:
    buf = buf_executable()
    with tempfile.TemporaryDirectory(prefix="petpro-lint-") as tmp:
        generate(Path(tmp), proto_root)
        image = Path(tmp) / IMAGE_PATH
        result = subprocess.run(
            [str(buf), "lint", str(image), "--path", "petpro", "--config", str(proto_root / "buf.yaml")],
            check=False,
        )
    if result.returncode == 0:
        print("buf lint: clean")
    else:
        print(f"buf lint: findings (exit {result.returncode})", file=sys.stderr)
    return result.returncode


def cmd_breaking(proto_root: Path, against: Path) -> int:
    """``buf breaking`` of a freshly built image against the released one (offline, both are images)."""
    buf = buf_executable()
    if not against.exists():
        raise CodegenError(f"{against} not found: the released descriptor image to compare against")
    with tempfile.TemporaryDirectory(prefix="petpro-breaking-") as tmp:
        generate(Path(tmp), proto_root)
        image = Path(tmp) / IMAGE_PATH
        result = subprocess.run(
            [
                str(buf),
                "breaking",
                str(image),
                "--against",
                str(against),
                "--path",
                "petpro",
                "--config",
                str(proto_root / "buf.yaml"),
            ],
            check=False,
        )
    if result.returncode == 0:
        print(f"buf breaking: no breaking change against {_display_file(against)}")
    else:
        print(
            f"buf breaking: breaking changes against {_display_file(against)} (exit {result.returncode})",
            file=sys.stderr,
        )
    return result.returncode


def _display_file(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _display(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix() + "/"
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m petpro_dev.codegen", description=__doc__.split("\n\n")[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="fail if gen/ is stale (generates into a temp dir)"
    )
    mode.add_argument("--lint", action="store_true", help="run buf lint on a freshly built descriptor image")
    mode.add_argument(
        "--breaking",
        action="store_true",
        help="run buf breaking against the released descriptor image (protos/released/)",
    )
    # For tests and tooling: generate from / compare with other trees than the repository's.
    parser.add_argument("--gen-dir", type=Path, default=GEN_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--proto-root", type=Path, default=PROTO_ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--against", type=Path, default=RELEASED_IMAGE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.check:
            return cmd_check(args.gen_dir, args.proto_root)
        if args.lint:
            return cmd_lint(args.proto_root)
        if args.breaking:
            return cmd_breaking(args.proto_root, args.against)
        return cmd_generate(args.gen_dir, args.proto_root)
    except CodegenError as exc:
        print(f"codegen: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
