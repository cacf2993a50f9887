"""Preparing a TFDS dataset: refused within seconds when it would have to be downloaded and
cannot be, and nothing left behind by an attempt that failed.

Offline, TFDS's `download_and_prepare` waits about 200 s (measured: 216 s for mnist here)
behind a progress bar stuck at 0% before it fails: its requests session retries every
download 10 times with exponential backoff (`tensorflow_datasets.core.download.downloader`,
MAX_RETRIES = 10, backoff 0.2 s doubling), and with no timeout a network that drops packets
waits longer still. TFDS offers no option to shorten that (`tfds.download.DownloadConfig` has
none), so the hosts of the downloads the dataset still needs are probed first, with a short
timeout and the proxy settings its downloads would use. Afterwards TFDS leaves its temporary
download folders and empty folders behind; `prepare` removes them.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse

from sft_tf.errors import UserError

# Enough for a TCP handshake across the world; far below TFDS's own ~200 s of retries.
PROBE_SECONDS = 4.0


def prepare(builder, spec: str, field: str) -> None:
    """Downloads and prepares `builder`'s dataset unless it is prepared already.

    Args:
      builder: a `tfds.core.DatasetBuilder`.
      spec: the dataset spec, for the error message.
      field: the config field the spec came from, for the error message.

    Raises:
      UserError: the dataset is not prepared and a download it needs cannot start.
      Exception: whatever TFDS raises when preparing fails otherwise (after the clean-up).
    """
    # TFDS's own test: it downloads nothing when the version's folder exists (and then only
    # checks that the version is not blocked).
    if builder.data_path.exists() or not _downloads_for_real(builder):
        builder.download_and_prepare()
        return
    missing = [url for url in sorted(builder.url_infos or {}) if url not in _downloaded(builder)]
    reason = _unreachable(missing)
    if reason:
        root = builder.data_dir_root
        raise UserError(
            f"{field}={spec!r}: TFDS {builder.name} is not prepared under {root} and could not "
            f"be downloaded ({reason}); prepare it on a machine with network (tfds build "
            f"{builder.name} --data_dir=DIR), copy DIR here and set config.data.tfds_data_dir=DIR"
        )
    before = _listing(builder)
    try:
        builder.download_and_prepare()
    except BaseException:
        _remove_leftovers(builder, before)
        raise


def _downloads_for_real(builder) -> bool:
    """False when `download_and_prepare` is not TFDS's own: tfds.testing.mock_data replaces it
    with one that downloads nothing, so there is no network to ask for."""
    return builder.download_and_prepare.__module__.startswith("tensorflow_datasets.core")


def _download_dirs(builder) -> list:
    # TFDS keeps downloads in DATA_DIR/downloads/<dataset>/ (older versions: downloads/).
    downloads = builder.data_dir_root / "downloads"
    return [downloads, downloads / builder.name]


def _downloaded(builder) -> set[str]:
    """The URLs whose download is finished in the data dir: the file and its .INFO beside it,
    which records the URL (TFDS reuses such a download instead of fetching it again)."""
    urls = set()
    for folder in _download_dirs(builder):
        if not folder.is_dir():
            continue
        for info in folder.glob("*.INFO"):
            if not info.with_suffix("").exists():
                continue
            try:
                urls.update(json.loads(info.read_text()).get("urls", []))
            except (OSError, ValueError):
                continue  # an unreadable record: the download is fetched again
    return urls


def _unreachable(urls: list[str]) -> str | None:
    """Why the downloads of `urls` cannot start, in a few words; None when they can (or when
    they are not HTTP: TFDS copies gs:// and local files itself)."""
    import requests  # what TFDS downloads with: the same proxy variables and NO_PROXY apply

    tried = set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            continue
        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
        if proxy:
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        if address in tried:
            continue
        tried.add(address)
        problem = _connect(*address)
        if problem:
            return f"{'proxy ' if proxy else ''}{address[0]}:{address[1]}: {problem}"
    return None


def _connect(host: str, port: int) -> str | None:
    """Opens and closes a TCP connection; returns what went wrong, or None.

    Runs in a thread that is given up on after PROBE_SECONDS: the timeout of a socket does not
    cover the name lookup, which can hang as long as the resolver's own retries.
    """
    outcome: list[str | None] = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            outcome.append(None)
        except socket.gaierror:
            outcome.append("the name does not resolve (no network?)")
        except TimeoutError:
            outcome.append(f"no answer within {PROBE_SECONDS:g} s")
        except OSError as e:
            outcome.append((e.strerror or type(e).__name__).lower())

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 1)
    return outcome[0] if outcome else f"no answer within {PROBE_SECONDS:g} s"


def _watched(builder) -> list:
    """The folders a preparation writes into, outermost first: the data dir, its downloads
    and extraction folders, and the dataset's own folders down to the version's parent."""
    root, downloads = builder.data_dir_root, builder.data_dir_root / "downloads"
    dataset, folder = [], builder.data_path.parent
    while folder != root and root in folder.parents:
        dataset.append(folder)
        folder = folder.parent
    return [root, downloads, downloads / "extracted", downloads / builder.name, *dataset[::-1]]


def _listing(builder) -> dict:
    """folder -> the names in it now (None: the folder does not exist), for `_watched`."""
    return {
        folder: {p.name for p in folder.iterdir()} if folder.is_dir() else None
        for folder in _watched(builder)
    }


def _remove_leftovers(builder, before: dict) -> None:
    """Removes what a failed preparation added to the watched folders, except finished
    downloads (a file with its .INFO: a retry reuses them), then the folders it created that
    are left empty. Whatever was there before stays as it was."""
    # TFDS's own folders: watched themselves, never removed whole.
    kept = {"downloads", "extracted", "manual", builder.name}
    for folder, names in _listing(builder).items():
        for name in sorted((names or set()) - (before[folder] or set()) - kept):
            path = folder / name
            if path.with_suffix(path.suffix + ".INFO").exists() or name.endswith(".INFO"):
                continue
            if path.is_dir():
                path.rmtree()
            else:
                path.unlink(missing_ok=True)
    for folder in reversed(_watched(builder)):
        if before[folder] is None and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
