"""GraphiQL's scripts and stylesheets from the npm registry, byte for byte what unpkg serves.

Strawberry's GraphiQL page loads React, GraphiQL and its explorer plugin from unpkg.com,
each pinned by URL (``https://unpkg.com/<package>@<version>/<path>``) and by an SRI
``integrity`` hash. unpkg serves the files of the package's npm tarball, so
``npm pack <package>@<version>`` yields the same bytes: each pinned package is packed once
into ``.cache/unpkg/<package>@<version>/`` (the tarball's ``package/``), and every file the
page names is checked against the page's hash. The browser tests answer the CDN's URLs
from there: GraphiQL runs offline on exactly what it would load from unpkg.

``scripts/ensure-graphiql-assets`` runs ``main()``; it is a no-op once the cache is filled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "unpkg"
# Pinned to an exact version: a range or a tag would not name one set of bytes.
_URL = re.compile(r"^https://unpkg\.com/((?:@[^/@]+/)?[^/@]+)@(\d+\.\d+\.\d+)/(.+)$")


class AssetError(Exception):
    """The page's assets cannot be had or do not match: one line saying why."""


@dataclass(frozen=True, slots=True)
class Asset:
    url: str
    integrity: str  # the page's SRI attribute, e.g. "sha384-<base64>"
    package: str  # "<name>@<version>", as npm names it
    path: str  # inside the package

    def local(self, cache: Path = CACHE) -> Path:
        return cache / self.package / self.path


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get("src") if tag == "script" else values.get("href")
        if tag in ("script", "link") and url and url.startswith("https://unpkg.com/"):
            self.found.append((url, values.get("integrity")))


def page_assets(html: str) -> list[Asset]:
    """Every unpkg script and stylesheet of ``html``, with its package and hash."""
    collector = _Collector()
    collector.feed(html)
    assets = []
    for url, integrity in collector.found:
        match = _URL.match(url)
        if match is None:
            raise AssetError(f"{url}: not an exact package version on unpkg")
        if not integrity:
            raise AssetError(f"{url}: no integrity attribute")
        name, version, path = match.groups()
        assets.append(Asset(url, integrity, f"{name}@{version}", path))
    if not assets:
        raise AssetError("the page loads nothing from unpkg.com")
    return assets


def sri(path: Path, algorithm: str = "sha384") -> str:
    """The Subresource Integrity value of the file at ``path``."""
    digest = hashlib.new(algorithm, path.read_bytes()).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


def mismatches(assets: list[Asset], cache: Path = CACHE) -> list[str]:
    """One line per asset whose cached file is not the one the page's hash names."""
    problems = []
    for asset in assets:
        local = asset.local(cache)
        if not local.is_file():
            problems.append(f"{asset.url}: {local} is missing")
            continue
        algorithm = asset.integrity.split("-", 1)[0]
        if sri(local, algorithm) != asset.integrity:
            problems.append(f"{asset.url}: {sri(local, algorithm)} != {asset.integrity}")
    return problems


def ensure(assets: list[Asset], cache: Path = CACHE) -> None:
    """Pack every package ``assets`` come from into ``cache`` unless it is there already."""
    for package in sorted({asset.package for asset in assets}):
        target = cache / package
        if (target / "package.json").is_file():
            continue
        npm = shutil.which("npm")
        if npm is None:
            raise AssetError("npm is not installed (it fetches the pinned packages)")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            # pack, not install: only this package's own tarball, none of its dependencies.
            packed = subprocess.run(  # noqa: S603 - npm with a name@version from the page
                [npm, "pack", package, "--json", "--ignore-scripts", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                check=False,
            )
            if packed.returncode != 0:
                last = (packed.stderr.strip().splitlines() or ["no output"])[-1]
                raise AssetError(f"npm pack {package} failed: {last}")
            tarball = Path(tmp) / json.loads(packed.stdout)[0]["filename"]
            with tarfile.open(tarball) as archive:
                archive.extractall(tmp, filter="data")
            try:
                os.replace(Path(tmp) / "package", target)
            except OSError:
                if not (target / "package.json").is_file():  # else another run was first
                    raise


def main() -> int:
    from graphql_api.web.graphiql import graphiql_html

    try:
        assets = page_assets(graphiql_html())
        ensure(assets)
    except AssetError as exc:
        print(f"ensure-graphiql-assets: {exc}", file=sys.stderr)
        return 1
    problems = mismatches(assets)
    for problem in problems:
        print(f"ensure-graphiql-assets: {problem}", file=sys.stderr)
    if not problems:
        print(CACHE)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
