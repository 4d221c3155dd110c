"""The webui command: serve the UI (with the demo backend), check definition files, print
the definition JSON Schema."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from . import workflow
from .catalog import BUNDLED_DIR, DefinitionFolders, ExtraService, node_types
from .config import DEFAULT_HOST, DEFAULT_PORT, Settings
from .format import DefinitionError, schema_text
from .guard import is_loopback

DEMO_NOTE = ("Built-in demo: draws procedural pictures, no AI model involved. It speaks the "
             "A1111 API through the same `a1111` definition as a real A1111. For a real one, "
             "start A1111 with `--api` and use the AUTOMATIC1111 entry (set `WEBUI_A1111_URL` "
             "if it is not at http://127.0.0.1:7860).")


# What `webui --help` says: plain text (the module docstring is written for the source).
HELP = ("One browser page for image generation on every backend you run, generated from "
        "service definition files. Without a command, webui serves the UI (with a built-in "
        f"demo backend) on http://{DEFAULT_HOST}:{DEFAULT_PORT}/.")
EPILOG = "Each command has its own help: webui serve --help lists the server's options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "serve")
    parser = argparse.ArgumentParser(prog="webui", description=HELP, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the UI (the default command)")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="images and user definitions (default ./webui-data, or $WEBUI_DATA)")
    serve.add_argument("--definitions", type=Path, action="append", default=[],
                       metavar="DIR", help="a further folder of definition files (repeatable)")
    serve.add_argument("--url", action="append", default=[], metavar="ID=URL",
                       help="base URL of a service, e.g. a1111=http://gpu-box:7860 (repeatable)")
    serve.add_argument("--no-demo", action="store_true", help="do not start the demo backend")
    serve.add_argument("--demo-port", type=int, default=0,
                       help="port of the (first) demo backend on 127.0.0.1 (default: any free)")
    serve.add_argument("--demo-instances", type=int, default=1, metavar="N",
                       help="run N demo backends as one pool (default 1)")
    serve.add_argument("--threads", type=int, default=16,
                       help="server threads (default 16); at most half follow live pages "
                            "(job event streams), the others answer requests")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a host name webui is reached by, e.g. gpu-box.lan (repeatable; "
                            "loopback names and IP addresses are always accepted)")
    serve.add_argument("--no-password", action="store_true",
                       help="serve other machines without WEBUI_PASSWORD (a trusted network "
                            "only)")

    demo = sub.add_parser("demo", help="run only the demo backend (an A1111 API emulator)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=7861)
    demo.add_argument("--step-delay", type=float, default=0.05,
                      help="seconds per sampling step (default 0.05)")

    check = sub.add_parser("check", help="validate definition files")
    check.add_argument("files", nargs="+", type=Path)
    check.add_argument("--upgrade", action="store_true",
                       help="rewrite files that use old keywords in the current edition "
                            "(the old file is kept as FILE.orig; comments are not kept)")

    schema = sub.add_parser("schema", help="print the JSON Schema of definition files")
    schema.add_argument("--output", type=Path, help="write to this file instead")
    schema.add_argument("--reference", type=Path, metavar="FILE",
                        help="also write the format's reference (markdown) to FILE")

    imp = sub.add_parser("import-workflow", help=workflow.CLI_HELP,
                         description=workflow.CLI_DESCRIPTION)
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--service", default=workflow.BASE_SERVICE, help=workflow.CLI_SERVICE_HELP)
    imp.add_argument("--name", help="the service's name (default: the file's name)")
    imp.add_argument("--data-dir", type=Path, default=None,
                     help="the data folder (default ./webui-data, or $WEBUI_DATA)")
    imp.add_argument("--url", help=workflow.CLI_URL_HELP)

    args = parser.parse_args(argv)
    if args.command == "import-workflow":
        return import_workflow(args)
    if args.command == "check":
        return check_files(args.files, upgrade=args.upgrade)
    if args.command == "demo":
        from waitress import serve as waitress_serve

        from .demo import create_demo_app

        print(f"demo backend (A1111 API, procedural images) on http://{args.host}:{args.port}",
              flush=True)
        waitress_serve(create_demo_app(step_delay=args.step_delay), host=args.host,
                       port=args.port, threads=4, ident="webui-demo")
        return 0
    if args.command == "schema":
        if args.reference:
            from .format.reference import reference_markdown

            args.reference.write_text(reference_markdown(), encoding="utf-8")
        if args.output:
            args.output.write_text(schema_text(), encoding="utf-8")
        else:
            sys.stdout.write(schema_text())
        return 0
    return serve_ui(args, parser)


def check_files(files: list[Path], *, upgrade: bool = False) -> int:
    """Print ``file: field.path: message`` for every problem, and a warning for every old
    keyword (``upgrade``: rewrite such files); 0 if all files are valid."""
    failed = 0
    by_folder: dict[Path, DefinitionFolders] = {}  # each folder's files parsed once
    for path in files:
        # A definition may extend a bundled one or one beside it.
        folders = by_folder.setdefault(path.parent, DefinitionFolders([BUNDLED_DIR, path.parent]))
        loaded = folders.load(path)
        if isinstance(loaded, DefinitionError):
            failed += 1
            for line in loaded.lines():
                print(line)
            continue
        definition = loaded
        for loc, message in definition.warnings:
            print(f"{path}: {loc}: warning: {message}")
        if upgrade and definition.warnings:
            rewrite(path)
            print(f"{path}: rewritten in the current edition (the old one is {path.name}.orig)")
        modes = ", ".join(definition.modes)
        print(f"{path}: ok ({definition.id}: {modes})")
    return 1 if failed else 0


def import_workflow(args: argparse.Namespace) -> int:
    """``webui import-workflow``: write the workflow's definition; 1 with a message if it
    cannot be made."""
    from .workflow import WorkflowError, read_workflow, write_service

    settings = Settings()
    if args.data_dir:
        settings.data_dir = args.data_dir
    folders = DefinitionFolders(settings.definition_dirs,
                                {args.service: args.url} if args.url else None)
    found = folders.raw_by_id().get(args.service)
    service = folders.catalog().get(args.service)
    if found is None or service is None:
        print(f"webui: {workflow.no_base(args.service)}", file=sys.stderr)
        return 1
    try:
        data = read_workflow(args.file)
        written = write_service(data, node_types(service), found[0],
                                settings.user_definitions, name=args.name or args.file.stem,
                                url=service.base_url, source=args.file.name)
    except WorkflowError as exc:
        print(f"webui: {args.file}: {exc}", file=sys.stderr)
        return 1
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        print(f"webui: {args.file}: this workflow could not be read ({type(exc).__name__}: "
              f"{str(exc)[:200]})", file=sys.stderr)
        return 1
    loaded = folders.load(written)
    if isinstance(loaded, DefinitionError):
        for line in loaded.lines():
            print(line, file=sys.stderr)
        return 1
    print(f"{written}: ok ({loaded.id}: {', '.join(loaded.modes)}); "
          f"it is on webui's home page as {loaded.model.name!r}")
    return 0


def rewrite(path: Path) -> None:
    """Write a definition file anew with its old keywords replaced (YAML; JSON stays JSON)."""
    import json

    import yaml

    from .format.legacy import upgrade
    from .format.load import parse_text

    text = path.read_text(encoding="utf-8")
    data, _warnings = upgrade(parse_text(text, str(path)))
    path.with_name(path.name + ".orig").write_text(text, encoding="utf-8")
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=96),
                        encoding="utf-8")


def start_demo(port: int = 0, step_delay: float = 0.05) -> tuple[str, object]:
    """Serve the demo backend on 127.0.0.1 in a background thread; return (URL, server)."""
    from waitress.server import create_server

    from .demo import create_demo_app

    server = create_server(create_demo_app(step_delay=step_delay), host="127.0.0.1",
                           port=port, threads=4)
    threading.Thread(target=server.run, name="demo-backend", daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def release_freed_memory() -> None:
    """Have glibc's malloc give large freed blocks back to the system at once. By default it
    raises its mmap threshold to the size of each large block freed (up to 32 MB), so images
    (Pillow allocates them in 16 MB blocks) and image answers are served from the heap
    afterwards, where the freed space is kept: webui grew by 40-100 MB per 4×1024² job
    before it levelled off (benchmarks/generate_overhead.py). A fixed threshold (128 KiB,
    glibc's default start) keeps the memory of a batch for the batch. Elsewhere: nothing."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS, Windows)
    if mallopt is not None:
        M_MMAP_THRESHOLD = -3  # malloc.h
        mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def serve_ui(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from waitress import serve

    from . import delivery
    from .app import create_app

    overrides = {}
    for item in args.url:
        service_id, sep, url = item.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            parser.error(f"--url wants ID=http://host:port, not {item!r}")
        overrides[service_id] = url
    release_freed_memory()
    settings = Settings(extra_definition_dirs=args.definitions, url_overrides=overrides)
    if not is_loopback(args.host) and settings.password is None and not args.no_password:
        parser.error(f"--host {args.host} serves other machines: set WEBUI_PASSWORD (the UI's "
                     "password), or pass --no-password on a network you trust")
    settings.allowed_hosts = list(args.allow_host)
    settings.max_streams = max(1, args.threads // 2)
    if not is_loopback(args.host) and args.host not in ("0.0.0.0", "::"):
        settings.allowed_hosts.append(args.host)
    if args.data_dir:
        settings.data_dir = args.data_dir
    if not args.no_demo:
        urls = []
        for i in range(max(1, args.demo_instances)):
            url, _server = start_demo(args.demo_port + i if args.demo_port else 0)
            urls.append(url)
        settings.extras.append(ExtraService(
            id="demo", definition="a1111", name="A1111 demo (no AI model)", url=",".join(urls),
            note=DEMO_NOTE, demo=True,
        ))
        print(f"demo backend (A1111 API, procedural images) on {', '.join(urls)}")
    app = create_app(settings)
    delivery.warm(app)  # the static files compressed before the first visit asks for them
    print(f"webui on http://{args.host}:{args.port}/")
    print(f"  images saved in {settings.images_dir.resolve()}")
    print(f"  drop definition files into {settings.user_definitions.resolve()}")
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="webui")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
