"""The `mmsearch` command: a thin shell over the Python API."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mmsearch import config, hub
from mmsearch.config import DEFAULT_FPS, DEFAULT_SCENE_THRESHOLD, DEFAULT_TIME_LIMIT
from mmsearch.errors import MmsearchError, UsageError
from mmsearch.settings import settings

# plain help (no rich markup: "[env ...]" stays in the text); heavy modules load lazily
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Index media and find it by meaning.")

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="Store folder [env MMSEARCH_STORE; default ./indexes/default].",
    show_default=False)]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="ARCH:PRETRAINED (open_clip tag or local checkpoint) [env MMSEARCH_MODEL].",
    show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="cpu, cuda, cuda:1 ... [env MMSEARCH_DEVICE; default: CUDA if present].",
    show_default=False)]
ShardsOpt = Annotated[int | None, typer.Option(
    "--shards", min=1, help="Create the store with N shards (items routed by a hash of their "
    "id); a sharded store opens as one without it.", show_default=False)]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", help="Run on Ray: local (start one here), auto (join the running cluster) or "
    "a Ray address; needs a sharded store and `pip install mmsearch[ray]`.",
    show_default=False)]


def _err(message: str) -> None:
    print(f"mmsearch: {message}", file=sys.stderr)


def handle_errors(fn: F) -> F:
    """Map library errors to exit codes: 2 for usage errors, 1 for real failures."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before, hub.frontend = hub.frontend, "cli"  # messages name options, not arguments
        log = _log_warnings()
        propagate, log.propagate = log.propagate, False  # said once, by this command
        try:
            return fn(*args, **kwargs)
        except UsageError as e:
            _err(f"error: {e}")
            raise typer.Exit(2) from None
        except MmsearchError as e:
            _err(f"error: {e}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _err("interrupted; the store keeps everything committed so far")
            raise typer.Exit(130) from None
        finally:
            hub.frontend = before
            log.propagate = propagate

    return wrapper  # type: ignore[return-value]


def _log_warnings() -> Any:
    """The library's warnings (a skipped channel, an offline fallback) as `mmsearch:
    warning: ...` lines on stderr, once."""
    import logging

    class ToStderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            _err(f"{record.levelname.lower()}: {record.getMessage()}")

    log = logging.getLogger("mmsearch")
    if not any(isinstance(h, ToStderr) or type(h).__name__ == "ToStderr"
               for h in log.handlers):
        log.addHandler(ToStderr(logging.WARNING))
    return log


def _open(store: Path | None, model: str | None = None, device: str | None = None,
          shards: int | None = None, ray: str | None = None) -> Any:
    import mmsearch

    return mmsearch.open(config.store_path(store), model=model, device=device, shards=shards,
                         ray=ray)


@app.command()
@handle_errors
def index(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATH...", help="Files and folders to index (recursive).",
        show_default=False)] = None,
    store: StoreOpt = None, model: ModelOpt = None, device: DeviceOpt = None,
    shards: ShardsOpt = None, ray: RayOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per encoder batch.")] =
    config.BATCH_SIZE,
    workers: Annotated[int | None, typer.Option(min=1, help="Decode threads.",
                                                show_default="auto")] = None,
    fps: Annotated[float, typer.Option(
        min=0.001, help="Video frames sampled per second (near-identical ones are dropped).")]
    = DEFAULT_FPS,
    scene_threshold: Annotated[float, typer.Option(
        min=0.0, help="Keep a sampled frame when its 32x32 gray thumbnail differs from the "
        "last kept one by more than this (mean abs difference, 0-255).")]
    = DEFAULT_SCENE_THRESHOLD,
    video_time_limit: Annotated[float | None, typer.Option(
        min=0.001, help="Seconds of decoding per video at most (what was decoded is kept) "
        f"[env MMSEARCH_VIDEO_TIME_LIMIT; default {DEFAULT_TIME_LIMIT:g}].",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="List skipped and partly decoded files.")] = False,
    rebuild_index: Annotated[bool, typer.Option(
        "--rebuild-index", help="Retrain the vector index afterwards (PATHs then optional).")]
    = False,
    id_col: Annotated[str | None, typer.Option(
        "--id-col", help="Catalog: the product id column [default: id].",
        show_default=False)] = None,
    image_col: Annotated[str | None, typer.Option(
        "--image-col", help="Catalog: the image path column (relative to the catalog file).",
        show_default=False)] = None,
    text_col: Annotated[list[str] | None, typer.Option(
        "--text-col", metavar="COLUMN",
        help="Catalog: a text column to embed (repeatable; joined).",
        show_default=False)] = None,
    delete_missing: Annotated[bool, typer.Option(
        "--delete-missing", help="Catalog: delete products absent from this file.")] = False,
    tags: Annotated[bool | None, typer.Option(
        "--tags/--no-tags", help="Tag sound events (YAMNet) in audio and videos; the store "
        "remembers the choice [default: as the store was built, else on; skipped with a "
        "warning while YAMNet is not installed, see `mmsearch models`].",
        show_default=False)] = None,
    speech: Annotated[bool | None, typer.Option(
        "--speech/--no-speech", help="Transcribe speech (Whisper); the store remembers the "
        "choice [default: as the store was built, else on].", show_default=False)] = None,
    whisper: Annotated[str | None, typer.Option(
        "--whisper", metavar="PATH_OR_ID", help="Whisper model: folder or Hugging Face id "
        "[env MMSEARCH_WHISPER; default: the installed one, see `mmsearch models`, else "
        "openai/whisper-tiny.en].", show_default=False)] = None,
    reprocess: Annotated[bool, typer.Option(
        "--reprocess", help="Decode and embed every file again, changed or not (also "
        "retries files that failed).")] = False,
    audio_model: Annotated[str | None, typer.Option(
        "--audio-model", help="Also embed sounds with this CLAP model (folder or Hugging Face "
        "id, e.g. laion/clap-htsat-unfused) [default: off].", show_default=False)] = None,
    ocr: Annotated[bool | None, typer.Option(
        "--ocr/--no-ocr", help="Read the text in pictures and video moments (OCR) [default: "
        "on when the `ocr` extra is installed; then as the store was built].",
        show_default=False)] = None,
) -> None:
    """Index files and folders, or a product catalog (.csv/.tsv/.parquet/.jsonl); re-running
    is incremental."""
    if not paths and not rebuild_index:
        raise UsageError("give at least one PATH to index (or --rebuild-index)")
    missing = [str(p) for p in paths or [] if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    from mmsearch.catalog.read import is_catalog

    catalogs = [p for p in paths or [] if p.is_file() and is_catalog(p)]
    catalog_opts = id_col or image_col or text_col or delete_missing
    if catalog_opts and not catalogs:
        raise UsageError("--id-col/--image-col/--text-col/--delete-missing need a catalog "
                         "file (.csv, .tsv, .parquet, .jsonl)")
    if catalogs and (len(catalogs) > 1 or len(paths or []) > 1):
        raise UsageError("index one catalog file at a time, on its own")
    col = _open(store, model, device, shards, ray)
    if catalogs:
        result = col.index_catalog(catalogs[0], id_col=id_col or "id", image_col=image_col,
                                   text_cols=text_col or [], delete_missing=delete_missing,
                                   batch_size=batch_size)
        for item, reason in result.failed if verbose else []:
            _err(f"skipped product {item}: {reason}")
        if result.failed and not verbose:
            _err(f"{len(result.failed)} product(s) skipped (use --verbose to list them)")
        print(result.summary(), file=sys.stderr)
        if rebuild_index:
            print(f"index rebuilt: {_index_line(col.rebuild_index())}", file=sys.stderr)
        return
    if not paths:
        if not col.path.exists():
            raise UsageError(f"no store at {col.path}")
        print(f"index rebuilt: {_index_line(col.rebuild_index())}", file=sys.stderr)
        return
    report = col.index(paths, progress=False if quiet else None, batch_size=batch_size,
                       workers=workers, fps=fps, scene_threshold=scene_threshold,
                       video_time_limit=video_time_limit, tags=tags, speech=speech,
                       whisper=whisper, audio_model=audio_model, ocr=ocr,
                       reprocess=reprocess)
    if verbose:
        for path, reason in report.failures:
            _err(f"skipped {path}: {reason}")
        for path, reason in report.warnings:
            _err(f"partly indexed {path}: {reason}")
    else:
        if report.failed:
            _err(f"{report.failed} file(s) skipped (use --verbose to list them)")
        if report.partial:
            _err(f"{report.partial} file(s) only partly decoded (use --verbose to list them)")
    if not quiet or report.failed or report.partial:
        print(report.summary(), file=sys.stderr)
    if rebuild_index:
        print(f"index rebuilt: {_index_line(col.rebuild_index())}", file=sys.stderr)


@app.command()
@handle_errors
def query(
    text: Annotated[str | None, typer.Argument(help="What to look for.", show_default=False)]
    = None,
    image: Annotated[Path | None, typer.Option("--image", help="Query by an example image.",
                                               show_default=False)] = None,
    audio: Annotated[Path | None, typer.Option("--audio", help="Query by an example sound.",
                                               show_default=False)] = None,
    store: StoreOpt = None, model: ModelOpt = None, device: DeviceOpt = None,
    shards: ShardsOpt = None, ray: RayOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, metavar="N", help="Number of results.")] = 10,
    where: Annotated[str | None, typer.Option(
        "--where", help="SQL condition on metadata, e.g. \"width >= 300\".",
        show_default=False)] = None,
    modality: Annotated[str | None, typer.Option(
        "--modality", help="Only these kinds of items, comma-separated: image,video,...",
        show_default=False)] = None,
    thumbnails: Annotated[Path | None, typer.Option(
        "--thumbnails", help="Write a JPEG thumbnail of each result (a video's best moment) "
        "into this folder.", show_default=False)] = None,
    also: Annotated[list[str] | None, typer.Option(
        "--add", metavar="TEXT",
        help="Another text the results should match (repeatable).",
        show_default=False)] = None,
    negative: Annotated[list[str] | None, typer.Option(
        "--not", metavar="TEXT",
        help="Push down results matching this text (repeatable; `-word` in TEXT "
        "does the same).", show_default=False)] = None,
    weight: Annotated[list[str] | None, typer.Option(
        "--weight", metavar="CHANNEL=W",
        help="Channel weight CHANNEL=W, e.g. text=0.5 (repeatable; 0 leaves a "
        "channel out; channels: visual, text, speech, tags, ocr).", show_default=False)] = None,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", help="Only results with a calibrated score at least this (z scale: "
        "0 = unrelated, 3 = a clear match).", show_default=False)] = None,
    sort: Annotated[str | None, typer.Option(
        "--sort", help="Order by a metadata column (COL, -COL or COL:desc) after the "
        "--min-score cutoff.", show_default=False)] = None,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many results "
                                        "(paging).")] = 0,
    fusion: Annotated[str, typer.Option("--fusion", help="How channels combine: sum "
                                        "(calibrated) or rrf (reciprocal rank).")] = "sum",
    explain: Annotated[bool, typer.Option(
        "--explain", help="Show which channels and query parts contributed.")] = False,
    rerank: Annotated[int, typer.Option(
        "--rerank", min=0, help="Rescore the top N with a cross-attention image-text model.")]
    = 0,
    reranker: Annotated[str | None, typer.Option(
        "--reranker", help="Reranker spec: blip, blip:PATH_OR_NAME ... "
        f"[env MMSEARCH_RERANKER; default {config.DEFAULT_RERANKER}].", show_default=False)]
    = None,
    vector: Annotated[str | None, typer.Option(
        "--vector", help="Query by an embedding: numbers separated by commas (a JSON list "
        "works) or a .npy file.", show_default=False)] = None,
    filters: Annotated[str | None, typer.Option(
        "--filters", help="Structured filters as a JSON object, e.g. '{\"price\": "
        "{\"lte\": 50}}' (injection-safe).", show_default=False)] = None,
    request: Annotated[Path | None, typer.Option(
        "--request", help="A whole search request as JSON (a file, or - for stdin; as "
        "SearchRequest.to_dict writes it); other options given here override it.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Search the store by text, image, sound, vector or several of them."""
    from mmsearch.request import SearchRequest

    base = _read_request(request) if request is not None else {}
    if text is None and image is None and audio is None and vector is None and not base:
        raise UsageError("give a text query, --image, --audio, --vector or --request")
    for opt, path in (("--image", image), ("--audio", audio)):
        if path is not None and not path.is_file():
            raise UsageError(f"{opt}: no such file: {path}")
    if reranker and not (rerank or base.get("rerank")):
        raise UsageError("--reranker needs --rerank N (how many results to rescore)")
    texts = [t for t in [text, *(also or [])] if t is not None]
    given = {"text": texts or None, "image": image, "audio": audio, "where": where,
             "modality": modality, "negative": negative, "weights": weight,
             "min_score": min_score, "sort": sort, "reranker": reranker,
             "vector": _parse_vector(vector) if vector is not None else None,
             "filters": _parse_json_object("--filters", filters) if filters else None}
    flags = {"k": (k, 10), "offset": (offset, 0), "fusion": (fusion, "sum"),
             "explain": (explain, False), "rerank": (rerank, 0)}
    options = {name: v for name, v in given.items() if v is not None}
    options |= {name: v for name, (v, default) in flags.items()
                if v != default or name not in base}
    req = SearchRequest.build(base, **options)
    col = _open(store, model, device, shards, ray)
    if not col.path.exists():
        raise UsageError(f"no store at {col.path}; run `mmsearch index PATH` first")
    results = col.search(req)
    if getattr(results, "partial", False):
        _err(f"partial results: shard(s) {', '.join(results.missing)} did not answer in time")
    if thumbnails is not None:
        from mmsearch.thumbnails import write_thumbnails

        for res, _, error in write_thumbnails(results, thumbnails):
            if error:
                _err(f"no thumbnail for {res.path or res.id}: {error}")
    if as_json:
        for r in results:
            print(json.dumps(r.to_dict(), ensure_ascii=False, default=str))
        return
    if not results:
        _err("no results")
        return
    for rank, r in enumerate(results, req.offset + 1):
        at = f"  @ {_clock(r.start_s)}-{_clock(r.end_s)}" if r.start_s is not None else ""
        said = r.metadata.get("transcript") or r.metadata.get("tags")
        said = f'  "{said[:77] + "..." if len(said) > 80 else said}"' if said else ""
        print(f"{rank:>3}  {r.score:7.4f}  {r.path or r.id}{at}{said}")
        if r.explain:
            print(f"       {_explain_line(r.explain)}")


@app.command()
@handle_errors
def info(store: StoreOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Describe what the store holds."""
    col = _open(store)
    if not col.path.exists():
        raise UsageError(f"no store at {col.path}")
    data = col.info()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    mods = ", ".join(f"{n} {m}" for m, n in data["modalities"].items()) or "nothing"
    chans = ", ".join(f"{n} {c}" for c, n in data["channels"].items()) or "none"
    print(f"store      {data['store']}\nmodel      {data['model']} ({data['dim']}-d)\n"
          f"items      {data['items']} ({mods})\nvectors    {data['vectors']} ({chans})\n"
          f"index      {_index_line(data['index_params']) or data['index']}\n"
          f"segments   {data['segments']} "
          f"(generation {data['generation']})\nsize       {_size(data['bytes_on_disk'])}\n"
          f"columns    {', '.join(data['columns'])}")
    hub = data.get("hubness")
    if hub:
        print(f"hubness    text queries corrected by {hub['queries']} bank queries "
              f"(tau {hub['tau']}, beta {hub['beta']}, {hub['bank']})")
    if data.get("shards"):
        print("shards     " + ", ".join(f"{s['name']} {s['items']} ({s['index']})"
                                        for s in data["shards"]))


@app.command()
@handle_errors
def remove(paths: Annotated[list[Path], typer.Argument(
        metavar="PATH...", help="Files or folders whose items leave the store.",
        show_default=False)],
        store: StoreOpt = None) -> None:
    """Remove items by file or folder (the files themselves are not touched)."""
    col = _open(store)
    if not col.path.exists():
        raise UsageError(f"no store at {col.path}")
    n = col.remove_paths(paths)
    print(f"removed {n} item(s)", file=sys.stderr)


@app.command()
@handle_errors
def doctor(store: StoreOpt = None,
           repair: Annotated[bool, typer.Option(
               "--repair", help="Rebuild a lost manifest from the intact segments; drop "
               "damaged segments (listing the ids lost) and a damaged index.")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
           ) -> None:
    """Verify every file of the store (checksums, headers); with --repair, fix it."""
    from mmsearch.store import doctor as doc

    path = config.store_path(store)
    report = doc.repair(path) if repair else doc.check(path)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
        if report.healthy:
            print(f"{path}: healthy ({report.rows} rows)")
        elif not repair:
            print(f"{path}: damaged; run `mmsearch doctor --repair --store {path}`")
    if not report.healthy:
        raise typer.Exit(1)


models_app = typer.Typer(add_completion=False, rich_markup_mode=None,
                         help="What models are installed, and add the optional ones.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
@handle_errors
def models(ctx: typer.Context,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
           all_cached: Annotated[bool, typer.Option(
               "--all", help="Also check every open_clip pretrained tag's cache (slow).")]
           = False) -> None:
    """List the models usable now without a download, and the sound channels' models:
    where each is installed from, or the command that adds it."""
    if ctx.invoked_subcommand is not None:
        return
    from mmsearch.encoders.available import quick_models
    from mmsearch.locate import sound_models

    found = quick_models()
    if all_cached:
        from mmsearch.encoders.available import available_models

        found += [m for m in available_models() if m.spec not in {f.spec for f in found}]
    sounds = sound_models()
    if as_json:
        print(json.dumps({"encoders": [m.__dict__ for m in found],
                          "sound": [m.__dict__ for m in sounds]}, indent=2))
        return
    print("image-text models")
    for m in found:
        dim = f"{m.dim:>5}-d" if m.dim else "       "
        print(f"  {m.spec:<52} {dim}  {m.source}")
    print(f"  default: {config.DEFAULT_MODEL} (downloaded on first use; offline falls back "
          "to mmsearch-lite-4)")
    print("sound channels")
    for m in sounds:
        print(f"  {m.channel:<7} {m.name:<8} {m.path or '-'}  ({m.source})")
        if m.path is None:
            print(f"          add: {m.add}")


@models_app.command("add")
@handle_errors
def models_add(
        name: Annotated[str, typer.Argument(metavar="NAME", help="yamnet or whisper.")],
        path: Annotated[Path, typer.Argument(metavar="PATH", help="The model's folder.")],
) -> None:
    """Copy a model folder into the user model folder (see `mmsearch models`)."""
    from mmsearch.locate import add_model

    dest = add_model(name, path)
    print(f"added {name}: {dest}", file=sys.stderr)


@app.command()
@handle_errors
def serve(
    store: StoreOpt = None, model: ModelOpt = None, device: DeviceOpt = None,
    shards: ShardsOpt = None, ray: RayOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", show_default=False,
        help="Require this key in the X-API-Key header [env MMSEARCH_API_KEY].")] = None,
    max_k: Annotated[int, typer.Option("--max-k", min=1, help="Largest k a search may ask.")]
    = 1000,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.01, help="Largest uploaded image, MB.")] = 10.0,
    threads: Annotated[int, typer.Option(
        "--threads", min=1, help="Compute threads per request (FAISS, torch); requests run "
        "in parallel.")] = 1,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Server processes sharing the port (about one per CPU "
        "core; each opens the store, and a worker that dies is restarted).")] = 1,
) -> None:
    """Serve the store over HTTP: JSON API (OpenAPI at /docs) and a search page at /."""
    try:
        import uvicorn  # noqa: F401 - checked here, used by serve.run

        from mmsearch.serve import Limits
        from mmsearch.serve.run import ServeSpec
        from mmsearch.serve.run import serve as run_server
    except ImportError as e:
        raise UsageError(f"serving needs the `serve` extra: pip install 'mmsearch[serve]' "
                         f"({e.name} is missing)") from None
    if workers > 1 and ray:
        raise UsageError("--workers with --ray: scale the Ray cluster instead (one server "
                         "process drives it)")
    col = _open(store, model, device, shards, ray)
    if not col.path.exists():
        raise UsageError(f"no store at {col.path}")
    image_bytes = int(max_upload_mb * 2**20)
    spec = ServeSpec(str(col.path), model, device, shards, api_key or settings().api_key,
                     Limits(max_k=max_k, max_image_bytes=image_bytes,
                            max_body_bytes=max(Limits.max_body_bytes, 2 * image_bytes)),
                     threads)
    if workers > 1:
        col.close()  # each worker opens its own
    sock = _bind(host, port)  # bound before saying where: a used port is an error first
    print(f"serving {col.path} on http://{_url_host(host)}:{sock.getsockname()[1]}/ (API key "
          f"{'required' if spec.api_key else 'off'}"
          f"{f', {workers} workers' if workers > 1 else ''})", file=sys.stderr)
    run_server(spec, sock, workers, ray=ray, collection=col if workers == 1 else None)


def _bind(host: str, port: int) -> Any:
    """A listening TCP socket on host:port; UsageError when the address cannot be used."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _read_request(path: Path) -> dict[str, Any]:
    """The JSON object of a `--request` file (`-`: standard input)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as e:
        raise UsageError(f"--request: cannot read {path}: {e.strerror or e}") from None
    return _parse_json_object("--request", text)


def _parse_json_object(option: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{option} must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object")
    return value


def _parse_vector(spec: str) -> Any:
    """`--vector`: a .npy file, or numbers separated by commas/spaces (brackets allowed)."""
    import numpy as np

    if spec.endswith(".npy"):
        try:
            return np.load(spec, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"--vector: cannot read {spec}: {e}") from None
    try:
        return [float(x) for x in spec.strip().strip("[]").replace(",", " ").split()]
    except ValueError:
        raise UsageError("--vector takes numbers separated by commas, or a .npy file"
                         ) from None


def _index_line(p: dict[str, Any]) -> str:
    """One line for an index description (`Collection.info()['index_params']`)."""
    if not p:
        return "none"
    ram = f"{p['ram_bytes_per_vector']:g} B/vector in RAM"
    if p.get("type") != "ivfpq":
        return f"{p.get('type')} (exact; {ram})"
    return (f"ivfpq (nlist {p['nlist']}, m {p['m']} x {p['nbits']} bits"
            f"{', OPQ' if p['opq'] else ''}, nprobe {p['nprobe']}, rerank {p['rerank']}x, "
            f"trained on {p['trained_rows']} rows, {p['ntotal']} vectors, {p['device']}; "
            f"{ram} + {p['mapped_bytes_per_vector']} B/vector memory-mapped)"
            f"\n           {_recall_line(p)}")


def _recall_line(p: dict[str, Any]) -> str:
    """The index's measured recall@10 (held-out stored vectors vs exact search)."""
    if p.get("recall_at_10") is None:
        return "recall@10 not measured yet (measured when the index is next trained)"
    on = p.get("recall_measured_on") or {}
    verdict = "meets" if p.get("recall_met") else "BELOW"
    return (f"recall@10 {p['recall_at_10']:.3f} ({verdict} target {p['target_recall']:g}; "
            f"{on.get('queries')} held-out queries at {on.get('rows')} rows)")


def _explain_line(explain: dict[str, Any]) -> str:
    """One line per result: each channel's contribution and its parts' z-scores."""
    out = []
    for channel, c in explain.get("channels", {}).items():
        parts = ", ".join(f"{label} z={p['z']:+.2f}" for label, p in c["parts"].items())
        out.append(f"{channel} {c['contribution']:+.3f} ({parts})")
    if "rerank" in explain:
        rr = explain["rerank"]
        out.append(f"rerank p={rr['prob']:.3f}" if "prob" in rr else f"rerank {rr}")
    return "; ".join(out)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(float(seconds), 60)
    return f"{int(m)}:{s:04.1f}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
