"""The WordPress plugin as the zip a blogger uploads (Plugins → Add New → Upload Plugin): every
file of wordpress/affnet/ under affnet/, plus the French and Italian .mo files compiled from
their .po (WordPress 6.1 reads only .mo; they are built here, never committed). The zip is
deterministic (fixed timestamps and modes, sorted names), so two builds are byte-equal."""

from __future__ import annotations

import io
import struct
import zipfile
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "wordpress" / "affnet"
FOLDER = "affnet"  # WordPress installs the plugin in wp-content/plugins/<this folder>
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can state


def _skipped(relative: Path) -> bool:
    # Editor leftovers and hidden files stay out; .mo files are compiled from the .po below.
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts) or relative.suffix == ".mo"


def _mo(po_file: Path) -> bytes:
    with po_file.open("rb") as fh:
        catalog = read_po(fh)
    out = io.BytesIO()
    write_mo(out, catalog)
    mo = bytearray(out.getvalue())
    # Babel leaves the (empty) hash table's offset at 0; WordPress's MO reader (wp-includes/pomo)
    # refuses such a file, and reads the strings from that offset on. GNU msgfmt puts it after
    # the translations' table, which is where Babel's strings start: say so, as msgfmt does.
    order = "<" if struct.unpack_from("<I", mo)[0] == 0x950412DE else ">"  # Babel writes the machine's order
    _magic, _revision, count, _originals, translations, _size, _offset = struct.unpack_from(order + "7I", mo)
    struct.pack_into(order + "I", mo, 24, translations + 8 * count)
    return bytes(mo)


def build_zip(plugin_dir: Path = PLUGIN_DIR) -> bytes:
    """The zip of the plugin in `plugin_dir`, built afresh. Raises FileNotFoundError when the
    folder holds no plugin (affnet installed without its repository's wordpress/ folder)."""
    if not (plugin_dir / "affnet.php").is_file():
        raise FileNotFoundError(f"no WordPress plugin in {plugin_dir} (affnet.php is missing)")
    files: dict[str, bytes] = {}
    for path in plugin_dir.rglob("*"):
        relative = path.relative_to(plugin_dir)
        if not path.is_file() or _skipped(relative):
            continue
        files[f"{FOLDER}/{relative.as_posix()}"] = path.read_bytes()
        if path.suffix == ".po":
            files[f"{FOLDER}/{relative.with_suffix('.mo').as_posix()}"] = _mo(path)
    folders = {f"{FOLDER}/"} | {name[: i + 1] for name in files for i, c in enumerate(name) if c == "/"}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(folders | set(files)):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # Unix, so the modes below are read
            if name in files:
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o100644 << 16
                archive.writestr(info, files[name])
            else:
                info.external_attr = (0o40755 << 16) | 0x10  # a directory, for MS-DOS readers too
                archive.writestr(info, b"")
    return out.getvalue()


@cache
def plugin_zip() -> bytes:
    """The plugin's zip, built once per process."""
    return build_zip()
